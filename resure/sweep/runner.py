"""Running a sweep: cached stages from data preparation to the report.

Layout of the results folder (small files, meant to be kept)::

    sweep.json                    the resolved configuration
    runs/<run>/manifest.json      per run: identity, config, commit, versions, seeds,
                                  chat-template hash
    runs/<run>/answers/<suite>.jsonl              FastChat model answers
    runs/<run>/judgments/<suite>.<judge>.jsonl    FastChat judgments (+ failure)
    passes/<pass>/weighting_log.jsonl, train_result.json
    data/<pool>.json              corruption counts of each pool and of its prefixes
    *.csv, plots/*.png, report.md (see :mod:`resure.sweep.report`)
    **/stages/*.json              stage markers (see :mod:`resure.sweep.stages`)

and of the work folder (large, disposable; ``<results>/work`` unless given)::

    data/<pool>/pool.jsonl        the corrupted pool, in training order
    train/<pass>/                 the training output, checkpoints/samples-<n>/

Execution order: the base runs, then each training pass in turn (its data, its training,
then generation and judging of its sizes), then the aggregation. A pass whose runs are
all judged is skipped without touching its data or checkpoints, so a finished sweep
reruns in seconds without loading a model.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resure.io import atomic_path, atomic_write_json, atomic_write_jsonl, atomic_write_text
from resure.provenance import git_commit, package_versions
from resure.sweep.config import (
    JudgeUse,
    SuiteSpec,
    SweepConfig,
    eval_registries,
    missing_model_dirs,
    require_model_dirs,
)
from resure.sweep.plan import DataJob, Plan, Run, TrainPass, expand
from resure.sweep.stages import (
    DEFAULTS_MEASURED_ON,
    Stage,
    Timer,
    defaults_apply,
    estimate_seconds,
    find_markers,
    measured_rates,
    stable_hash,
)

logger = logging.getLogger(__name__)

VERSIONED_PACKAGES = ("resure", "torch", "transformers", "peft", "accelerate", "numpy",
                      "scipy", "pandas", "sentence-transformers", "vllm", "openai")
#: TrainConfig defaults the sweep applies unless [train] sets them.
#: (Every pool dialogue fits max_length, so an encoding failure is an error.)
TRAIN_DEFAULTS = {"policy": "error", "logging_steps": 1, "progress": False}
SUITE_SUBSET_SEED = 0


@dataclass(frozen=True)
class SuiteItems:
    """A suite's items as the sweep uses them (after its ``limit``)."""

    spec: SuiteSpec
    items: tuple  # of EvalItem

    def subset(self, limit: int | None) -> tuple:
        """The first ``limit`` items (nested: a smaller limit is a prefix)."""
        return self.items if limit is None else self.items[:limit]

    def identity(self, limit: int | None) -> dict[str, Any]:
        items = self.subset(limit)
        return {
            "suite": self.spec.suite,
            "options": self.spec.options,
            "items": stable_hash([dataclasses.asdict(i) for i in items], length=64),
            "n_items": len(items),
        }


@dataclass
class Task:
    """A stage and the call that produces its outputs."""

    stage: Stage
    action: Callable[[], dict[str, Any] | None]
    label: str


@dataclass
class PassTasks:
    """The tasks of one training pass (or of the base runs, with no data or training)."""

    name: str
    upstream: list[Task]  # data preparation and training
    downstream: list[Task]  # manifests, generation and judging of its runs


@dataclass
class SweepStatus:
    """What is done and what is left (for ``--dry-run`` and progress)."""

    runs: list[dict[str, Any]]
    todo: list[Task]
    done: int  # stages done, or not needed since everything after them is done
    estimate_s: float | None  # None: no measured stage times and no defaults for the model
    notes: list[str] = field(default_factory=list)


class Sweep:
    """A sweep over a validated config, writing into ``results`` (see module doc).

    Args:
        config: the validated sweep.
        results: the results folder.
        work: the folder for pools and checkpoints (default ``<results>/work``).
        suite_dirs: data folders of suites by label (they win over the config's).
    """

    def __init__(self, config: SweepConfig, results: str | os.PathLike,
                 work: str | os.PathLike | None = None,
                 suite_dirs: dict[str, str] | None = None):
        self.config = config
        self.results = Path(results)
        self.work = Path(work) if work is not None else self.results / "work"
        self.suite_dirs = dict(suite_dirs or {})
        self.plan: Plan = expand(config)
        self.notes: list[str] = []
        self._suites: dict[str, SuiteItems] | None = None
        self._judges: dict[str, Any] = {}
        self._backend: tuple[str, Any] | None = None
        self._model_paths: dict[str, Path] = {}
        self._template_hashes: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle

    def status(self) -> SweepStatus:
        """Runs, their stages' state and the estimated time left; runs nothing."""
        groups = self.tasks()
        rates = measured_rates(find_markers(self.results) + find_markers(self.work))
        todo: list[Task] = []
        queued: set[Path] = set()
        every: set[Path] = set()
        for g in groups:
            every.update(t.stage.marker_path for t in [*g.upstream, *g.downstream])
            down = [t for t in g.downstream if not t.stage.is_done()]
            # Data and training are needed only while some run of the pass is unjudged.
            need = [t for t in g.upstream if not t.stage.is_done()] + down if down else []
            for t in need:
                if t.stage.marker_path not in queued:  # a pool shared by several passes
                    queued.add(t.stage.marker_path)
                    todo.append(t)
        done = len(every) - len(queued)
        agg = self.aggregate_task()
        if not agg.stage.is_done():
            todo.append(agg)
        estimate: float | None = sum(estimate_seconds(t.stage, rates) for t in todo)
        if todo and not rates and not defaults_apply(m.name for m in self.config.models):
            estimate = None
        notes = [*missing_model_dirs(self.config), *self.notes]
        return SweepStatus(self._run_rows(groups), todo, done, estimate, notes)

    def run(self) -> Path:
        """Run every stage not done yet; returns the path of the report."""
        from tqdm.auto import tqdm

        require_model_dirs(self.config)
        self.results.mkdir(parents=True, exist_ok=True)
        self._write_work_ignore()
        atomic_write_json(self.results / "sweep.json", self.config.to_dict())
        groups = self.tasks()
        pending = [(g, [t for t in g.downstream if not t.stage.is_done()]) for g in groups]
        total = sum(len(down) + len(g.upstream) for g, down in pending if down) + 1
        with tqdm(total=total, desc=f"sweep {self.config.name}", unit="stage") as bar:
            for g, down in pending:
                if not down:
                    continue
                for task in [*g.upstream, *down]:
                    bar.set_postfix_str(task.label, refresh=True)
                    self._execute(task)
                    bar.update(1)
                self._release_backend()
            bar.set_postfix_str("aggregate", refresh=True)
            self._execute(self.aggregate_task())
            bar.update(1)
        return self.results / "report.md"

    def _execute(self, task: Task) -> None:
        if task.stage.is_done():
            return
        logger.info("stage %s", task.label)
        with Timer() as t:
            extra = task.action()
        task.stage.mark_done(t.seconds, extra)

    def _write_work_ignore(self) -> None:
        # Checkpoints are large and reproducible: keep the work folder out of git.
        if self.work.resolve().is_relative_to(self.results.resolve()):
            path = self.work / ".gitignore"
            if not path.exists():
                atomic_write_text(path, "*\n")

    # ------------------------------------------------------------------ tasks

    def tasks(self) -> list[PassTasks]:
        """Every stage of the sweep, grouped by training pass, in execution order."""
        suites = self.suites()
        groups = []
        if self.plan.base_runs:
            down = [t for r in self.plan.base_runs for t in self._run_tasks(r, suites)]
            groups.append(PassTasks("base", [], down))
        for p in self.plan.passes:
            up = [self._prepare_task(p.data), self._train_task(p)]
            down = [t for r in self.plan.runs_of(p) for t in self._run_tasks(r, suites)]
            groups.append(PassTasks(p.dirname, up, down))
        return groups

    def _prepare_task(self, job: DataJob) -> Task:
        stage = Stage("prepare", self.work / "data" / job.dirname, "prepare", job.identity(),
                      ("pool.jsonl",))
        return Task(stage, lambda: self._do_prepare(job), f"prepare {job.dirname}")

    def _train_task(self, p: TrainPass) -> Task:
        units = max(p.sizes)
        stage = Stage("train", self.work / "train" / p.dirname, "train", p.identity(),
                      tuple(f"checkpoints/samples-{n}" for n in p.sizes), units)
        return Task(stage, lambda: self._do_train(p), f"train {p.dirname}")

    def run_dir(self, run: Run) -> Path:
        return self.results / "runs" / run.dirname

    def _run_tasks(self, run: Run, suites: dict[str, SuiteItems]) -> list[Task]:
        out = [self._manifest_task(run)]
        for si in suites.values():
            uses = [u for u in si.spec.judges if u.applies_to(run.size, self.config.sizes)]
            if not uses:
                continue
            gen = self._generate_task(run, si, uses)
            if gen is not None:
                out.append(gen)
            for use in uses:
                out.append(self._judge_task(run, si, use, gen))
        return out

    def _manifest_task(self, run: Run) -> Task:
        inputs = {"run": run.identity(), "config": stable_hash(self.config.to_dict(), 64)}
        stage = Stage("manifest", self.run_dir(run), "manifest", inputs, ("manifest.json",))
        return Task(stage, lambda: self._do_manifest(run), f"manifest {run.dirname}")

    def _generate_task(self, run: Run, si: SuiteItems, uses: Sequence[JudgeUse]) -> Task | None:
        limits = [u.limit for u in uses if self._judge_needs_answers(u.judge)]
        if not limits:
            return None
        limit = None if None in limits else max(limits)
        gen = dataclasses.asdict(self.config.generation)
        inputs = {"run": run.identity(), "suite": si.identity(limit), "generation": gen}
        label = si.spec.label
        tokens = sum(len(i.turns) for i in si.subset(limit)) * self.config.generation.max_new_tokens
        stage = Stage(f"generate:{label}", self.run_dir(run), f"generate.{label}", inputs,
                      (f"answers/{label}.jsonl",), units=tokens)
        return Task(stage, lambda: self._do_generate(run, si, limit),
                    f"generate {label} {run.dirname}")

    def _judge_task(self, run: Run, si: SuiteItems, use: JudgeUse, gen: Task | None) -> Task:
        spec = self.config.judge(use.judge)
        needs = self._judge_needs_answers(use.judge)
        inputs = {
            "run": run.identity(),
            "suite": si.identity(use.limit),
            "judge": {"judge": spec.judge, "options": spec.options},
            "answers": gen.stage.input_hash if (needs and gen) else None,
        }
        name = f"{si.spec.label}.{use.judge}"
        turns = sum(len(i.turns) for i in si.subset(use.limit))
        stage = Stage(f"judge:{spec.judge}", self.run_dir(run), f"judge.{name}", inputs,
                      (f"judgments/{name}.jsonl",), units=turns)
        return Task(stage, lambda: self._do_judge(run, si, use),
                    f"judge {name} {run.dirname}")

    def aggregate_task(self) -> Task:
        judged = sorted(
            t.stage.input_hash for g in self.tasks() for t in g.downstream
            if t.stage.kind.startswith("judge")
        )
        inputs = {"judgments": judged, "analysis": dataclasses.asdict(self.config.analysis),
                  "config": stable_hash(self.config.to_dict(), 64), "code": _report_code()}
        stage = Stage("aggregate", self.results, "aggregate", inputs,
                      ("leaderboard.csv", "report.md"))
        return Task(stage, self._do_aggregate, "aggregate")

    def _run_rows(self, groups: list[PassTasks]) -> list[dict[str, Any]]:
        by_dir: dict[Path, list[Task]] = {}
        for g in groups:
            for t in g.downstream:
                by_dir.setdefault(t.stage.directory, []).append(t)
        rows = []
        for run in self.plan.all_runs:
            tasks = by_dir.get(self.run_dir(run), [])
            left = [t.stage.name for t in tasks if not t.stage.is_done()]
            rows.append({"run": run.dirname, "model": run.model.label, "method": run.method,
                         "mixture": run.mixture, "size": run.size, "seed": run.seed,
                         "stages": len(tasks), "left": left})
        return rows

    # ------------------------------------------------------------------ suites and judges

    def suites(self) -> dict[str, SuiteItems]:
        """Items of every suite, loaded once; an optional suite without data is skipped."""
        if self._suites is None:
            self._suites = {}
            for spec in self.config.suites:
                items = self._load_suite(spec)
                if items is not None:
                    self._suites[spec.label] = SuiteItems(spec, tuple(items))
        return self._suites

    def _load_suite(self, spec: SuiteSpec):
        _, _, suites = eval_registries()
        data_dir = self.suite_dirs.get(spec.label) or spec.data_dir
        cls = suites.get(spec.suite)
        env_var = cls.env_var
        if data_dir is None and env_var and not os.environ.get(env_var):
            if spec.optional:
                note = (f"suite {spec.label} skipped: no data directory given (pass "
                        f"--suite-dir {spec.label}=DIR or set {env_var})")
                logger.warning(note)
                self.notes.append(note)
                return None
        items = cls(**spec.options).load(data_dir)
        if spec.limit is not None and spec.limit < len(items):
            # A seeded draw, in the suite's order, so every run sees the same items.
            keep = sorted(random.Random(SUITE_SUBSET_SEED).sample(range(len(items)), spec.limit))
            items = [items[i] for i in keep]
        return items

    def _judge_class(self, label: str):
        return eval_registries()[1].get(self.config.judge(label).judge)

    def _judge_needs_answers(self, label: str) -> bool:
        return bool(self._judge_class(label).needs_answers)

    def judge_direction(self, label: str) -> str:
        """``higher`` or ``lower``: the config's, else the judge class's."""
        spec = self.config.judge(label)
        if spec.direction is not None:
            return spec.direction
        cls = self._judge_class(label)
        return "higher" if getattr(cls, "higher_is_better", True) else "lower"

    # ------------------------------------------------------------------ stage actions

    def _do_prepare(self, job: DataJob) -> dict[str, Any]:
        from resure.data import save_conversations
        from resure.models import load_tokenizer
        from resure.sweep.data import prepare_pool

        tokenizer = load_tokenizer(self._model_path(job.model.name))
        pool, stats = prepare_pool(job, self.config.sizes, tokenizer)
        directory = self.work / "data" / job.dirname
        save_conversations(directory / "pool.jsonl", pool)
        atomic_write_json(self.results / "data" / f"{job.dirname}.json", stats)
        return {"pool": len(pool)}

    def _do_train(self, p: TrainPass) -> dict[str, Any]:
        from resure.data import load_conversations
        from resure.train import TrainConfig, train

        pool_path = self.work / "data" / p.data.dirname / "pool.jsonl"
        pool = load_conversations(pool_path, format="openai").conversations
        out = self.work / "train" / p.dirname
        config = TrainConfig(
            model=p.model.name,
            output_dir=str(out),
            method=p.method.method,
            method_options=dict(p.method.options),
            seed=p.seed,
            save_at_samples=list(p.sizes),
            **{**TRAIN_DEFAULTS, **p.train},
        )
        result = train(config, conversations=pool)
        missing = [n for n in p.sizes if n not in result.snapshots]
        if missing:
            raise RuntimeError(f"training pass {p.dirname} saved no checkpoint for sizes "
                               f"{missing} ({result.num_samples} trainable dialogues)")
        keep = self.results / "passes" / p.dirname
        with atomic_path(keep / "weighting_log.jsonl") as tmp:
            shutil.copyfile(result.weighting_log, tmp)
        atomic_write_json(keep / "train_result.json",
                          {**result.to_dict(), "labels": _pass_labels(p)})
        return {"steps": result.steps, "samples": result.num_samples,
                "skipped": result.skipped}

    def _checkpoint(self, run: Run) -> tuple[Path, Path | None]:
        """(model, adapter) to evaluate for ``run``."""
        base = self._model_path(run.model.name)
        if run.train_pass is None:
            return base, None
        snap = self.work / "train" / run.train_pass.dirname / "checkpoints" / f"samples-{run.size}"
        if (snap / "adapter_config.json").is_file():
            return base, snap
        return snap, None

    def _model_path(self, name: str) -> Path:
        if name not in self._model_paths:
            from resure.models import resolve_model

            self._model_paths[name] = resolve_model(name)
        return self._model_paths[name]

    def _do_manifest(self, run: Run) -> None:
        atomic_write_json(self.run_dir(run) / "manifest.json", self.manifest(run))

    def manifest(self, run: Run) -> dict[str, Any]:
        """Identity, labels, resolved config, commit, versions, seeds, template hash."""
        p = run.train_pass
        return {
            "run": run.dirname,
            "hash": run.hash,
            "identity": run.identity(),
            "labels": {"model": run.model.label, "method": run.method,
                       "mixture": run.mixture, "size": run.size, "seed": run.seed},
            "seeds": {
                "train": p.seed if p else None,
                "data": p.data.data_seed if p else None,
                "generation": 0,
                "suite_subset": SUITE_SUBSET_SEED,
            },
            "train_pass": p.dirname if p else None,
            "config": self.config.to_dict(),
            "git": git_commit(),
            "versions": package_versions(VERSIONED_PACKAGES),
            "chat_template_hash": self._template_hash(run.model.name),
        }

    def _template_hash(self, name: str) -> str | None:
        if name not in self._template_hashes:
            from resure.models import load_tokenizer
            from resure.tokenize import chat_template_hash

            self._template_hashes[name] = chat_template_hash(
                load_tokenizer(self._model_path(name)))
        return self._template_hashes[name]

    def _backend_for(self, run: Run):
        """The generation backend of ``run`` (kept while the run's suites are generated)."""
        if self._backend is None or self._backend[0] != run.hash:
            self._release_backend()
            model, adapter = self._checkpoint(run)
            g = self.config.generation
            cls = _backend_class(g.backend)
            params = inspect.signature(cls).parameters
            options = dict(g.options)
            if "adapter" in params:
                options["adapter"] = str(adapter) if adapter else None
            elif adapter is not None:
                raise TypeError(f"backend {g.backend!r} takes no adapter; cannot generate "
                                f"with {adapter}")
            if "model_id" in params:
                options["model_id"] = run.dirname
            self._backend = (run.hash, cls(model=str(model), **options))
        return self._backend[1]

    def _release_backend(self) -> None:
        if self._backend is not None:
            self._backend = None
            import gc

            gc.collect()

    def _do_generate(self, run: Run, si: SuiteItems, limit: int | None) -> dict[str, Any]:
        from resure.eval.backends import GenerationError, SamplingParams

        g = self.config.generation
        sampling = SamplingParams(max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                                  top_p=g.top_p, seed=0)
        items = si.subset(limit)
        failures: list[dict[str, Any]] = []
        try:
            answers = self._backend_for(run).generate(items, sampling)
        except GenerationError as e:
            answers = e.answers
            failures = [dataclasses.asdict(f) for f in e.failures]
            logger.warning("%s: %d items failed to generate: %s", run.dirname,
                           len(failures), e)
        directory = self.run_dir(run) / "answers"
        label = si.spec.label
        atomic_write_jsonl(directory / f"{label}.failures.jsonl", failures)
        atomic_write_jsonl(directory / f"{label}.jsonl", [a.to_fastchat() for a in answers])
        return {"answers": len(answers), "failed": len(failures)}

    def _judge_for(self, run: Run, label: str):
        """A judge instance; judges that score the evaluated model get its checkpoint."""
        spec = self.config.judge(label)
        cls = self._judge_class(label)
        if cls.needs_answers:
            if label not in self._judges:
                self._judges[label] = cls(**spec.options)
            return self._judges[label]
        model, adapter = self._checkpoint(run)
        options = dict(spec.options)
        params = inspect.signature(cls).parameters
        options["model"] = str(model)
        if "model_id" in params:
            options["model_id"] = run.dirname
        if "adapter" in params:
            options["adapter"] = str(adapter) if adapter else None
        elif adapter is not None:
            raise TypeError(f"judge {spec.judge!r} takes no adapter; cannot score {run.dirname}")
        return cls(**options)

    def _do_judge(self, run: Run, si: SuiteItems, use: JudgeUse) -> dict[str, Any]:
        from resure.eval.judging import judgment_to_row

        items = si.subset(use.limit)
        judge = self._judge_for(run, use.judge)
        label = si.spec.label
        if judge.needs_answers:
            answers, missing = self._read_answers(run, label, items)
            judgments = judge.judge([i for i in items if i.question_id not in missing],
                                    answers)
            judgments += _generation_failures(items, missing, run.dirname, use.judge)
        else:
            judgments = judge.judge(items, None)
        rows = [judgment_to_row(j) for j in judgments]
        atomic_write_jsonl(self.run_dir(run) / "judgments" / f"{label}.{use.judge}.jsonl", rows)
        failed = sum(j.score is None for j in judgments)
        return {"judged": len(judgments), "failed": failed}

    def _read_answers(self, run: Run, label: str, items) -> tuple[list, dict[Any, str]]:
        from resure.eval.judging import read_answers

        directory = self.run_dir(run) / "answers"
        wanted = {i.question_id for i in items}
        answers = [a for a in read_answers([directory / f"{label}.jsonl"])
                   if a.question_id in wanted]
        failures = _read_jsonl_if(directory / f"{label}.failures.jsonl")
        missing = {f["question_id"]: f["error"] for f in failures if f["question_id"] in wanted}
        answered = {a.question_id for a in answers}
        for q in wanted - answered - set(missing):
            missing[q] = "no answer generated"
        return answers, missing

    def _do_aggregate(self) -> dict[str, Any]:
        from resure.sweep.report import write_outputs

        return write_outputs(self)

    # ------------------------------------------------------------------ reading results

    def judgment_rows(self) -> list[dict[str, Any]]:
        """Turn-level rows of every planned judgment file (see :mod:`.analysis`).

        Base-run judgments (size 0) are repeated for every (method, mixture, seed) of the
        grid, since the base model is the 0-sample point of every curve.
        """
        from resure.eval.judging import read_judgments

        rows = []
        suites = self.suites()
        for run in self.plan.all_runs:
            for label, si in suites.items():
                for use in si.spec.judges:
                    if not use.applies_to(run.size, self.config.sizes):
                        continue
                    path = self.run_dir(run) / "judgments" / f"{label}.{use.judge}.jsonl"
                    if not path.is_file():
                        continue
                    for j in read_judgments(path):
                        for key in self._curve_keys(run):
                            rows.append({
                                "suite": label, "judge": use.judge, "model": run.model.label,
                                **key, "size": run.size,
                                "direction": self.judge_direction(use.judge),
                                "question_id": j.question_id, "turn": j.turn,
                                "score": j.score, "failure": j.failure,
                            })
        return rows

    def _curve_keys(self, run: Run) -> list[dict[str, Any]]:
        if not run.is_base:
            return [{"method": run.method, "mixture": run.mixture, "seed": run.seed}]
        return [{"method": m.label, "mixture": x.label, "seed": s}
                for m in self.config.methods for x in self.config.mixtures
                for s in self.config.seeds]


# ---------------------------------------------------------------------- helpers


def _backend_class(name: str):
    return eval_registries()[0].get(name)


def _pass_labels(p: TrainPass) -> dict[str, Any]:
    return {"model": p.model.label, "method": p.method.label,
            "mixture": p.data.mixture.label, "seed": p.seed}


def _read_jsonl_if(path: Path) -> list[dict[str, Any]]:
    from resure.io import read_jsonl

    return read_jsonl(path) if path.is_file() else []


def _generation_failures(items, missing: dict[Any, str], model: str, judge: str) -> list:
    """One failed judgment per turn of every item that has no answer."""
    from resure.eval.types import Judgment

    return [
        Judgment(question_id=i.question_id, model=model, judge=judge, turn=t + 1,
                 score=None, failure=f"generation_failed: {missing[i.question_id]}")
        for i in items if i.question_id in missing for t in range(len(i.turns))
    ]


def _report_code() -> str:
    """Hash of the modules that write the tables and plots: the aggregate stage is cheap,
    so a change to them redoes it."""
    from resure.sweep import analysis, plots, report

    return stable_hash([Path(m.__file__).read_text(encoding="utf-8")
                        for m in (analysis, plots, report)], 64)


def summarize_status(status: SweepStatus) -> str:
    """A human-readable dry-run listing."""
    lines = [f"{'run':<60} {'stages':>6} {'left':>5}"]
    for r in status.runs:
        lines.append(f"{r['run']:<60} {r['stages']:>6} {len(r['left']):>5}")
    lines.append("")
    kinds: dict[str, int] = {}
    for t in status.todo:
        kinds[t.stage.kind.split(":")[0]] = kinds.get(t.stage.kind.split(":")[0], 0) + 1
    left = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing"
    lines.append(f"{len(status.runs)} runs; stages done: {status.done}; left: {left}")
    if status.estimate_s is None:
        lines.append(f"estimated time left: no estimate (stage times are measured on first "
                     f"run; the built-in figures are for {DEFAULTS_MEASURED_ON})")
    else:
        lines.append(f"estimated time left: {_duration(status.estimate_s)} (measured stage "
                     "times of this results folder where there are some, else figures "
                     f"measured for {DEFAULTS_MEASURED_ON})")
    lines.extend(status.notes)
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
