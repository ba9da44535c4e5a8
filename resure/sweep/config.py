"""Sweep configuration: a TOML file read with :mod:`tomllib` and validated before anything runs.

A sweep file has these tables (every one but ``[sweep]``, ``[models]``, ``[methods]``,
``[mixtures]`` and ``[suites]`` is optional)::

    [sweep]            name, sizes (nested training-set sizes), seeds, include_base
    [models.<label>]   name (a name resolve_model knows, or a local directory)
    [data]             source, format, min_assistant_turns, max_assistant_turns, seed
    [mixtures.<label>] sources {source = share}, corrupt_fraction, kinds {kind = weight}
    [methods.<label>]  method (registered name, default: the label), options {...}
    [train]            TrainConfig fields (the sweep itself sets model, method, seed,
                       output directory, checkpoint sizes, one epoch and a constant LR)
    [generation]       backend, max_new_tokens, temperature, top_p, options {...}
    [judges.<label>]   judge (registered name, default: the label), direction, options {...}
    [suites.<label>]   suite, data_dir, optional, limit, options {...},
                       judges {<judge label> = {sizes = "all" | "ends" | [..], limit = n}}
    [analysis]         include_base, bootstrap_resamples, confidence_level, bootstrap_seed

An unknown key, a value of the wrong type or a value outside its allowed set raises
:class:`ConfigError` naming the file, the key (``mixtures.noisy.kinds.swapp``), what is
allowed and, for misspelt names, the closest allowed one; unknown keys of a table are
reported before its values are checked. Relative paths (data sources, suite data
directories, model directories, the ``cache`` option of a judge) are resolved against the
config file's folder, never the working directory.

A data file must exist when the file is read. A model is a name :mod:`resure.models` knows,
or a path (anything with a ``/`` or starting with ``.`` or ``~``, or an existing folder);
a model directory may be missing while the file is validated, so that ``--dry-run`` can
list the runs before the download, but running refuses it (:func:`require_model_dirs`).
"""

from __future__ import annotations

import difflib
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Corruption kinds :mod:`resure.sweep.mixtures` knows (kept here to validate configs
#: without importing the mixture code).
CORRUPTION_KINDS = (
    "swap",
    "truncate",
    "repetition",
    "boilerplate",
    "noise",
    "off_domain",
    "shuffle",
    "cascade",
)
SIZE_SELECTORS = ("all", "ends")
#: Judge options holding a file path, resolved against the sweep file's folder like every
#: other relative path of the file.
JUDGE_PATH_OPTIONS = ("cache",)
DIRECTIONS = ("higher", "lower")
#: TrainConfig fields the sweep sets itself; a [train] table may not set them.
TRAIN_KEYS_SET_BY_SWEEP = (
    "model",
    "output_dir",
    "data",
    "format",
    "method",
    "method_options",
    "num_samples",
    "seed",
    "save_at_samples",
    "epochs",
    "max_steps",
    "lr_scheduler",
    "shuffle",
)

_MISSING = object()


class ConfigError(ValueError):
    """A sweep file breaks a rule; the message names the file and the key."""


@dataclass(frozen=True)
class ModelSpec:
    """A model to fine-tune: ``label`` names it in results, ``name`` is what
    :func:`resure.models.resolve_model` resolves (a known name or a directory)."""

    label: str
    name: str


@dataclass(frozen=True)
class MethodSpec:
    """A weighting method with its options (``label`` distinguishes variants)."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MixtureSpec:
    """A training-data quality mixture.

    Attributes:
        label: name in results.
        sources: ``(source, share)`` pairs; shares sum to 1.
        corrupt_fraction: fraction of assistant turns of the pool to corrupt.
        kinds: ``(kind, weight)`` pairs; weights sum to 1 (empty when clean).
    """

    label: str
    sources: tuple[tuple[str, float], ...]
    corrupt_fraction: float = 0.0
    kinds: tuple[tuple[str, float], ...] = ()

    def identity(self) -> dict[str, Any]:
        """What determines the mixture's data (not its label)."""
        return {
            "sources": [list(s) for s in self.sources],
            "corrupt_fraction": self.corrupt_fraction,
            "kinds": [list(k) for k in self.kinds],
        }


@dataclass(frozen=True)
class DataSpec:
    """How training dialogues are read and trimmed before mixing.

    ``seed`` fixes the data draw for every run; None draws it from each run's seed.
    """

    source: str = "chitchat:train"
    format: str | None = None
    min_assistant_turns: int = 1
    max_assistant_turns: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class GenerationSpec:
    """Generation settings shared by every suite that needs answers."""

    backend: str = "hf"
    max_new_tokens: int = 64
    temperature: float | None = 0.0
    top_p: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JudgeSpec:
    """A judge and its options; ``direction`` None means: ask the judge class."""

    label: str
    judge: str
    options: dict[str, Any] = field(default_factory=dict)
    direction: str | None = None


@dataclass(frozen=True)
class JudgeUse:
    """Where a suite uses a judge: at which sizes and on how many items."""

    judge: str  # label of a JudgeSpec
    sizes: str | tuple[int, ...] = "all"
    limit: int | None = None

    def applies_to(self, size: int, all_sizes: tuple[int, ...]) -> bool:
        """True when this judge runs at ``size`` (0 is the base model)."""
        if self.sizes == "all":
            return True
        if self.sizes == "ends":
            return size in (0, all_sizes[0], all_sizes[-1])
        return size in self.sizes


@dataclass(frozen=True)
class SuiteSpec:
    """An evaluation suite, its data folder and the judges that score it."""

    label: str
    suite: str
    judges: tuple[JudgeUse, ...]
    data_dir: Path | None = None
    optional: bool = False
    limit: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisSpec:
    """Settings of the Spearman analysis (see :mod:`resure.sweep.analysis`)."""

    include_base: bool = True
    bootstrap_resamples: int = 1000
    confidence_level: float = 0.95
    bootstrap_seed: int = 0


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep file."""

    name: str
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    models: tuple[ModelSpec, ...]
    methods: tuple[MethodSpec, ...]
    mixtures: tuple[MixtureSpec, ...]
    suites: tuple[SuiteSpec, ...]
    judges: tuple[JudgeSpec, ...]
    data: DataSpec = DataSpec()
    train: dict[str, Any] = field(default_factory=dict)
    generation: GenerationSpec = GenerationSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    include_base: bool = True
    path: Path | None = None

    def judge(self, label: str) -> JudgeSpec:
        return next(j for j in self.judges if j.label == label)

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain JSON-able data (for manifests)."""
        import dataclasses

        return _plain(dataclasses.asdict(self))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# --------------------------------------------------------------------------------------
# A table reader that names the key in every error and refuses keys nobody took.


class _Table:
    """Wraps one TOML table; ``take`` pops checked values, ``done`` refuses leftovers."""

    def __init__(self, data: Any, key: str, file: str):
        self.key = key
        self.file = file
        if not isinstance(data, dict):
            self.fail(key, f"must be a table, got {_type_name(data)}")
        self.data = dict(data)
        self.known: list[str] = []

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def fail(self, key: str, message: str):
        raise ConfigError(f"{self.file}: {key}: {message}")

    def expect(self, *names: str) -> _Table:
        """Refuse keys outside ``names`` now, before any value is checked, so that a
        misspelt key is reported as such rather than through a rule it makes fail."""
        self.known.extend(n for n in names if n not in self.known)
        self._refuse([n for n in self.data if n not in self.known])
        return self

    def take(self, name: str, kinds: tuple[type, ...], default: Any = _MISSING) -> Any:
        """Pop ``name``; check its type against ``kinds`` (bool is never an int here)."""
        if name not in self.known:
            self.known.append(name)
        if name not in self.data:
            if default is _MISSING:
                self.fail(self.path(name), "is required")
            return default
        value = self.data.pop(name)
        if not _is_a(value, kinds):
            allowed = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
            self.fail(self.path(name), f"must be {allowed}, got {_type_name(value)} {value!r}")
        return value

    def table(self, name: str, required: bool = False) -> _Table:
        value = self.take(name, (dict,), _MISSING if required else {})
        return _Table(value, self.path(name), self.file)

    def done(self) -> None:
        """Refuse every key no ``take`` has popped."""
        self._refuse(list(self.data))

    def _refuse(self, names: list[str]) -> None:
        for name in names:
            close = difflib.get_close_matches(name, self.known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            self.fail(
                self.path(name),
                f"unknown key.{hint} Allowed keys: {', '.join(sorted(self.known))}",
            )


_KIND_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "an array",
    dict: "a table",
    type(None): "absent",
}


def _is_a(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def _type_name(value: Any) -> str:
    return {dict: "table", list: "array", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def _check_choice(table: _Table, key: str, value: str, allowed) -> None:
    allowed = sorted(allowed)
    if value in allowed:
        return
    close = difflib.get_close_matches(value, allowed, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    table.fail(key, f"unknown value {value!r}.{hint} Allowed: {', '.join(allowed)}")


# --------------------------------------------------------------------------------------
# Sections


def _int_list(t: _Table, name: str, minimum: int, increasing: bool) -> tuple[int, ...]:
    values = t.take(name, (list,))
    key = t.path(name)
    if not values:
        t.fail(key, "must not be empty")
    for v in values:
        if not _is_a(v, (int,)) or v < minimum:
            t.fail(key, f"every entry must be an integer >= {minimum}, got {v!r}")
    if len(set(values)) != len(values):
        t.fail(key, f"entries must be unique, got {values}")
    if increasing and values != sorted(values):
        t.fail(key, f"must be increasing (nested sizes), got {values}")
    return tuple(values)


def _shares(t: _Table, key: str, table: dict, allowed: tuple[str, ...] | None) -> tuple:
    """Validate a ``{name = weight}`` table; weights >= 0, normalised to sum 1."""
    if not table:
        t.fail(key, "must name at least one entry")
    out = []
    for name, weight in table.items():
        if allowed is not None:
            _check_choice(t, f"{key}.{name}", name, allowed)
        if not _is_a(weight, (float,)) or weight < 0:
            t.fail(f"{key}.{name}", f"must be a number >= 0, got {weight!r}")
        out.append((name, float(weight)))
    total = sum(w for _, w in out)
    if total <= 0:
        t.fail(key, "weights must not all be 0")
    return tuple((name, w / total) for name, w in out if w > 0)


def _read_sweep(t: _Table) -> dict[str, Any]:
    t.expect("name", "sizes", "seeds", "include_base")
    out = {
        "name": t.take("name", (str,)),
        "sizes": _int_list(t, "sizes", 1, increasing=True),
        "seeds": _int_list(t, "seeds", 0, increasing=False),
        "include_base": t.take("include_base", (bool,), True),
    }
    t.done()
    return out


def _read_models(t: _Table, base: Path) -> tuple[ModelSpec, ...]:
    if not t.data:
        t.fail(t.key, "must define at least one [models.<label>] table")
    out = []
    for label in list(t.data):
        m = t.table(label).expect("name")
        name = _resolve_model(m, m.take("name", (str,)), base)
        m.done()
        out.append(ModelSpec(label, name))
    return tuple(out)


def _read_data(t: _Table, base: Path) -> DataSpec:
    t.expect("source", "format", "min_assistant_turns", "max_assistant_turns", "seed")
    source = t.take("source", (str,), "chitchat:train")
    spec = DataSpec(
        source=_resolve_source(t, t.path("source"), source, base),
        format=t.take("format", (str,), None),
        min_assistant_turns=t.take("min_assistant_turns", (int,), 1),
        max_assistant_turns=t.take("max_assistant_turns", (int,), None),
        seed=t.take("seed", (int,), None),
    )
    if spec.min_assistant_turns < 1:
        t.fail(t.path("min_assistant_turns"), "must be >= 1")
    if spec.max_assistant_turns is not None and spec.max_assistant_turns < max(
        1, spec.min_assistant_turns
    ):
        t.fail(t.path("max_assistant_turns"), "must be >= min_assistant_turns")
    t.done()
    return spec


def _resolve_source(t: _Table, key: str, source: str, base: Path) -> str:
    """A data file resolved against the sweep file's folder; it must exist (chitchat
    sources come with the chitchat-dataset package)."""
    if source.startswith("chitchat"):
        return source
    path = (base / Path(source).expanduser()).resolve()
    if not path.exists():
        t.fail(key, f"data file {path} not found (relative paths are resolved against "
               "the sweep file's folder)")
    return str(path)


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "~")) or "/" in name or "\\" in name


def _resolve_model(t: _Table, name: str, base: Path) -> str:
    """A known model name as is; a path (or an existing folder) resolved against the
    sweep file's folder. Whether a model directory exists is checked before running
    (:func:`missing_model_dirs`), so that ``--dry-run`` works before the download."""
    from resure.models import KNOWN_MODELS

    if name in KNOWN_MODELS:
        return name
    path = (base / Path(name).expanduser()).resolve()
    if _looks_like_path(name) or path.is_dir():
        return str(path)
    known = sorted(KNOWN_MODELS)
    close = difflib.get_close_matches(name.lower(), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    t.fail(t.path("name"), f"unknown model {name!r}: neither a known name nor a directory."
           f"{hint} Known names: {', '.join(known)}; or give a model directory (a path "
           "such as ./models/NAME, resolved against the sweep file's folder)")


def _read_mixtures(t: _Table, data: DataSpec, base: Path) -> tuple[MixtureSpec, ...]:
    if not t.data:
        t.fail(t.key, "must define at least one [mixtures.<label>] table")
    out = []
    for label in list(t.data):
        m = t.table(label).expect("sources", "corrupt_fraction", "kinds")
        raw_sources = m.take("sources", (dict,), {data.source: 1.0})
        key = m.path("sources")
        sources = _shares(m, key, raw_sources, None)
        sources = tuple((_resolve_source(m, f"{key}.{s}", s, base), w) for s, w in sources)
        fraction = m.take("corrupt_fraction", (float,), 0.0)
        if not 0.0 <= fraction < 1.0:
            m.fail(m.path("corrupt_fraction"), f"must be in [0, 1), got {fraction}")
        raw_kinds = m.take("kinds", (dict,), {})
        kinds: tuple = ()
        if fraction > 0:
            if not raw_kinds:
                m.fail(m.path("kinds"), f"is required when corrupt_fraction > 0; "
                       f"Allowed kinds: {', '.join(CORRUPTION_KINDS)}")
            kinds = _shares(m, m.path("kinds"), raw_kinds, CORRUPTION_KINDS)
        elif raw_kinds:
            m.fail(m.path("kinds"), "has no effect when corrupt_fraction is 0; remove it")
        m.done()
        out.append(MixtureSpec(label, sources, float(fraction), kinds))
    return tuple(out)


def _read_methods(t: _Table) -> tuple[MethodSpec, ...]:
    if not t.data:
        t.fail(t.key, "must define at least one [methods.<label>] table")
    out = []
    for label in list(t.data):
        m = t.table(label).expect("method", "options")
        spec = MethodSpec(label, m.take("method", (str,), label), m.take("options", (dict,), {}))
        m.done()
        out.append(spec)
    return tuple(out)


def _read_train(t: _Table) -> dict[str, Any]:
    for name in list(t.data):
        if name in TRAIN_KEYS_SET_BY_SWEEP:
            t.fail(t.path(name), "is set by the sweep itself (one constant-LR epoch, "
                   "checkpoints at the sweep sizes); remove it from [train]")
    out = dict(t.data)
    t.data.clear()
    return out


def _read_generation(t: _Table) -> GenerationSpec:
    t.expect("backend", "max_new_tokens", "temperature", "top_p", "options")
    spec = GenerationSpec(
        backend=t.take("backend", (str,), "hf"),
        max_new_tokens=t.take("max_new_tokens", (int,), 64),
        temperature=t.take("temperature", (float,), 0.0),
        top_p=t.take("top_p", (float,), 1.0),
        options=t.take("options", (dict,), {}),
    )
    if spec.max_new_tokens < 1:
        t.fail(t.path("max_new_tokens"), "must be >= 1")
    t.done()
    return spec


def _read_judges(t: _Table, base: Path) -> tuple[JudgeSpec, ...]:
    out = []
    for label in list(t.data):
        j = t.table(label).expect("judge", "direction", "options")
        direction = j.take("direction", (str,), None)
        if direction is not None:
            _check_choice(j, j.path("direction"), direction, DIRECTIONS)
        options = dict(j.take("options", (dict,), {}))
        for name in JUDGE_PATH_OPTIONS:
            if isinstance(options.get(name), str):
                options[name] = str((base / Path(options[name]).expanduser()).resolve())
        spec = JudgeSpec(label, j.take("judge", (str,), label), options, direction)
        j.done()
        out.append(spec)
    return tuple(out)


def _read_judge_use(t: _Table, label: str, sizes: tuple[int, ...]) -> JudgeUse:
    u = t.table(label).expect("sizes", "limit")
    sel = u.take("sizes", (str, list), "all")
    key = u.path("sizes")
    if isinstance(sel, str):
        _check_choice(u, key, sel, SIZE_SELECTORS)
    else:
        for s in sel:
            if not _is_a(s, (int,)) or (s != 0 and s not in sizes):
                u.fail(key, f"entry {s!r} is not 0 (the base model) or one of sweep.sizes "
                       f"{list(sizes)}")
        sel = tuple(sel)
    limit = u.take("limit", (int,), None)
    if limit is not None and limit < 1:
        u.fail(u.path("limit"), "must be >= 1")
    u.done()
    return JudgeUse(label, sel, limit)


def _read_suites(t: _Table, judges: tuple[JudgeSpec, ...], sizes, base: Path):
    if not t.data:
        t.fail(t.key, "must define at least one [suites.<label>] table")
    judge_labels = tuple(j.label for j in judges)
    out = []
    for label in list(t.data):
        s = t.table(label).expect("suite", "data_dir", "optional", "limit", "options",
                                  "judges")
        data_dir = s.take("data_dir", (str,), None)
        limit = s.take("limit", (int,), None)
        if limit is not None and limit < 1:
            s.fail(s.path("limit"), "must be >= 1")
        jt = s.table("judges", required=True)
        if not jt.data:
            s.fail(s.path("judges"), "must name at least one judge")
        uses = []
        for jl in list(jt.data):
            _check_choice(jt, jt.path(jl), jl, judge_labels)
            uses.append(_read_judge_use(jt, jl, sizes))
        spec = SuiteSpec(
            label=label,
            suite=s.take("suite", (str,), label),
            judges=tuple(uses),
            data_dir=(base / Path(data_dir).expanduser()).resolve() if data_dir else None,
            optional=s.take("optional", (bool,), False),
            limit=limit,
            options=s.take("options", (dict,), {}),
        )
        s.done()
        out.append(spec)
    return tuple(out)


def _read_analysis(t: _Table) -> AnalysisSpec:
    t.expect("include_base", "bootstrap_resamples", "confidence_level", "bootstrap_seed")
    spec = AnalysisSpec(
        include_base=t.take("include_base", (bool,), True),
        bootstrap_resamples=t.take("bootstrap_resamples", (int,), 1000),
        confidence_level=t.take("confidence_level", (float,), 0.95),
        bootstrap_seed=t.take("bootstrap_seed", (int,), 0),
    )
    if spec.bootstrap_resamples < 0:
        t.fail(t.path("bootstrap_resamples"), "must be >= 0 (0 turns the bootstrap off)")
    if not 0 < spec.confidence_level < 1:
        t.fail(t.path("confidence_level"), "must be in (0, 1)")
    t.done()
    return spec


def _implied_judges(suites: _Table) -> dict[str, dict]:
    """Judges a suite names without a [judges.<label>] table get default options."""
    names: dict[str, dict] = {}
    for s in suites.data.values():
        if isinstance(s, dict) and isinstance(s.get("judges"), dict):
            for label in s["judges"]:
                names.setdefault(label, {})
    return names


# --------------------------------------------------------------------------------------
# Entry points


def parse_config(data: dict[str, Any], file: str = "<config>", base: Path | None = None):
    """Validate the structure of an already-parsed TOML document.

    Checks types, allowed keys and values, and cross references (suite judges exist,
    judge sizes are sweep sizes). Registered names (methods, judges, suites, backends,
    TrainConfig fields) are checked by :func:`check_registered`.
    """
    base = base or Path.cwd()
    top = _Table(data, "", file).expect(
        "sweep", "models", "data", "mixtures", "methods", "train", "generation", "judges",
        "suites", "analysis")
    sweep = _read_sweep(top.table("sweep", required=True))
    models = _read_models(top.table("models", required=True), base)
    data_spec = _read_data(top.table("data"), base)
    mixtures = _read_mixtures(top.table("mixtures", required=True), data_spec, base)
    methods = _read_methods(top.table("methods", required=True))
    train = _read_train(top.table("train"))
    generation = _read_generation(top.table("generation"))
    suites_t = top.table("suites", required=True)
    judges_raw = {**_implied_judges(suites_t), **top.take("judges", (dict,), {})}
    judges = _read_judges(_Table(judges_raw, "judges", file), base)
    suites = _read_suites(suites_t, judges, sweep["sizes"], base)
    analysis = _read_analysis(top.table("analysis"))
    top.done()
    return SweepConfig(
        name=sweep["name"],
        sizes=sweep["sizes"],
        seeds=sweep["seeds"],
        include_base=sweep["include_base"],
        models=models,
        methods=methods,
        mixtures=mixtures,
        suites=suites,
        judges=judges,
        data=data_spec,
        train=train,
        generation=generation,
        analysis=analysis,
        path=None,
    )


def load_config(path: str | Path, check_names: bool = True) -> SweepConfig:
    """Read and validate a sweep file; with ``check_names`` also check registered names."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read sweep file: {e.strerror}") from e
    config = parse_config(data, str(path), path.resolve().parent)
    config = _with_path(config, path)
    if check_names:
        check_registered(config)
    return config


def _with_path(config: SweepConfig, path: Path) -> SweepConfig:
    import dataclasses

    return dataclasses.replace(config, path=path)


def check_registered(config: SweepConfig) -> None:
    """Check names against the registries and options against their constructors.

    Weighting methods are instantiated with their options (they refuse unknown ones);
    ``[train]`` keys must be :class:`resure.train.TrainConfig` fields of the right type;
    backend, judge and suite options are checked against their constructors, together
    with the options the sweep passes itself (model, adapter, model id).
    """
    file = str(config.path or "<config>")
    _check_methods(config, file)
    _check_train_keys(config, file)
    _check_eval_names(config, file)
    _check_eval_options(config, file)


def missing_model_dirs(config: SweepConfig) -> list[str]:
    """One message per model directory of ``config`` that does not exist (yet).

    Validation accepts them so that ``--dry-run`` lists the runs of a file whose model
    is downloaded later; running refuses them (:func:`require_model_dirs`).
    """
    from resure.models import KNOWN_MODELS

    return [
        f"models.{m.label}.name: model directory {m.name} not found: download it first "
        "(see the file's header)"
        for m in config.models
        if m.name not in KNOWN_MODELS and not Path(m.name).is_dir()
    ]


def require_model_dirs(config: SweepConfig) -> None:
    """Raise :class:`ConfigError` when a model directory of ``config`` is missing."""
    missing = missing_model_dirs(config)
    if missing:
        raise ConfigError(f"{config.path or '<config>'}: {'; '.join(missing)}")


def _fail(file: str, key: str, message: str):
    raise ConfigError(f"{file}: {key}: {message}")


def _check_methods(config: SweepConfig, file: str) -> None:
    from resure.registry import UnknownNameError
    from resure.weighting import get_weighting

    for m in config.methods:
        try:
            get_weighting(m.method, **m.options)
        except UnknownNameError as e:
            _fail(file, f"methods.{m.label}.method", str(e))
        except (TypeError, ValueError) as e:
            _fail(file, f"methods.{m.label}.options", str(e))


def _check_train_keys(config: SweepConfig, file: str) -> None:
    """``[train]`` keys must be TrainConfig fields; the resulting TrainConfig (with the
    sweep's sizes as checkpoints) must pass its own validation."""
    import dataclasses

    from resure.sweep.plan import train_settings
    from resure.sweep.runner import TRAIN_DEFAULTS
    from resure.train import TrainConfig

    allowed = sorted(f.name for f in dataclasses.fields(TrainConfig)
                     if f.name not in TRAIN_KEYS_SET_BY_SWEEP)
    for key in config.train:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            _fail(file, f"train.{key}", f"unknown key.{hint} Allowed keys: {', '.join(allowed)}")
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for key, value in config.train.items():
        _check_field_type(file, f"train.{key}", value, types[key])
    try:
        TrainConfig(model="check", output_dir="check", save_at_samples=list(config.sizes),
                    **{**TRAIN_DEFAULTS, **train_settings(config)})
    except (TypeError, ValueError) as e:
        _fail(file, "train", f"{e} (sweep.sizes are the checkpoint sizes)")


def _check_field_type(file: str, key: str, value: Any, annotation: Any) -> None:
    """Check a TOML value against a dataclass field annotation such as ``int``,
    ``float``, ``str | None`` or ``list[str] | None`` (TOML has no null, so ``None`` only
    means the key may be left out)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    simple = {"int": int, "float": float, "str": str, "bool": bool}
    kinds: list[type] = []
    item: type | None = None
    for part in (p.strip() for p in text.split("|")):
        if part in simple:
            kinds.append(simple[part])
        elif part.startswith("list"):
            kinds.append(list)
            item = simple.get(part[len("list["):-1])
        elif part.startswith("dict"):
            kinds.append(dict)
    if not kinds:  # an annotation this reader does not know: TrainConfig decides
        return
    if not _is_a(value, tuple(kinds)):
        expected = " or ".join(_KIND_NAMES[k] for k in kinds)
        _fail(file, key, f"expected {expected}, got {value!r}")
    if isinstance(value, list) and item is not None:
        for v in value:
            if not _is_a(v, (item,)):
                _fail(file, key, f"expected every entry to be {_KIND_NAMES[item]}, "
                      f"got {v!r}")


def _check_eval_names(config: SweepConfig, file: str) -> None:
    backends, judges, suites = eval_registries()
    _check_registered_name(file, "generation.backend", config.generation.backend, backends)
    for j in config.judges:
        _check_registered_name(file, f"judges.{j.label}.judge", j.judge, judges)
    for s in config.suites:
        _check_registered_name(file, f"suites.{s.label}.suite", s.suite, suites)


def _check_registered_name(file: str, key: str, name: str, registry) -> None:
    if name in registry:
        return
    known = registry.names()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    _fail(file, key, f"unknown {registry.kind} {name!r}.{hint} Allowed: {', '.join(known)}")


def sweep_options(cls, model: str = "<model>") -> dict[str, Any]:
    """Options the sweep passes to a backend or judge class besides the file's (the
    evaluated model, its adapter and run name where the constructor takes them)."""
    import inspect

    params = inspect.signature(cls).parameters
    out: dict[str, Any] = {"model": model}
    if "adapter" in params:
        out["adapter"] = None
    if "model_id" in params:
        out["model_id"] = None
    return out


def _check_eval_options(config: SweepConfig, file: str) -> None:
    backends, judges, suites = eval_registries()
    g = config.generation
    _check_options(file, "generation.options", backends, g.backend, g.options,
                   sweep_options(backends.get(g.backend)))
    for j in config.judges:
        cls = judges.get(j.judge)
        added = {} if cls.needs_answers else sweep_options(cls)
        _check_options(file, f"judges.{j.label}.options", judges, j.judge, j.options, added)
    for s in config.suites:
        _check_options(file, f"suites.{s.label}.options", suites, s.suite, s.options, {})


def _check_options(file: str, key: str, registry, name: str, options: dict[str, Any],
                   added: dict[str, Any]) -> None:
    """``options`` (from the file) plus ``added`` (by the sweep) must suit the
    constructor of ``name``; an option the sweep sets may not be in the file."""
    import inspect

    for option in options:
        if option in added:
            _fail(file, f"{key}.{option}", "is set by the sweep itself (the evaluated "
                  "checkpoint); remove it")
    try:
        registry.check_options(name, {**options, **added})
    except ValueError as e:
        params = inspect.signature(registry.get(name)).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        unknown = [o for o in options if o not in params and not takes_any]
        _fail(file, f"{key}.{unknown[0]}" if unknown else key, str(e))


def eval_registries():
    """The backend, judge and suite registries with their built-in entries loaded."""
    from resure.eval.backends import BACKENDS
    from resure.eval.judges import JUDGES
    from resure.eval.suites import SUITES

    return BACKENDS, JUDGES, SUITES
