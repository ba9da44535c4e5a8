"""Sweep-file validation: every broken rule names its key and what is allowed."""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest

from resure.sweep import Sweep
from resure.sweep.config import (
    ConfigError,
    load_config,
    missing_model_dirs,
    parse_config,
    require_model_dirs,
)
from resure.sweep.plan import expand
from resure.sweep.stages import defaults_apply

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = {
    "sweep": {"name": "t", "sizes": [4, 8], "seeds": [0, 1]},
    "models": {"tiny": {"name": "/models/tiny"}},
    "mixtures": {
        "clean": {},
        "noisy": {"corrupt_fraction": 0.3, "kinds": {"noise": 1, "truncate": 3}},
    },
    "methods": {"uniform": {}, "resure": {"options": {"threshold": 1.5}}},
    "train": {"batch_size": 4},
    "suites": {"chitchat_heldout": {"limit": 4, "judges": {"reference_nll": {}}}},
}


def with_change(path: str, value, delete: bool = False) -> dict:
    doc = copy.deepcopy(MINIMAL)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    if delete:
        del node[last]
    else:
        node[last] = value
    return doc


def test_minimal_config_parses_with_defaults():
    c = parse_config(copy.deepcopy(MINIMAL), "t.toml")
    assert c.sizes == (4, 8) and c.seeds == (0, 1)
    assert [m.label for m in c.mixtures] == ["clean", "noisy"]
    noisy = c.mixtures[1]
    assert noisy.kinds == (("noise", 0.25), ("truncate", 0.75))  # weights normalised
    assert noisy.sources == (("chitchat:train", 1.0),)  # the [data] source by default
    assert c.judges[0].judge == "reference_nll"  # implied by the suite
    assert c.suites[0].judges[0].sizes == "all"


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("sweep.sizez", [1], r"sweep\.sizez: unknown key\. Did you mean 'sizes'\?"),
        ("sweep.sizes", [8, 4], r"sweep\.sizes: must be increasing"),
        ("sweep.sizes", [4, 4], r"sweep\.sizes: entries must be unique"),
        ("sweep.sizes", [0, 4], r"sweep\.sizes: every entry must be an integer >= 1"),
        ("sweep.seeds", [], r"sweep\.seeds: must not be empty"),
        ("sweep.name", 3, r"sweep\.name: must be a string, got int 3"),
        ("mixtures.noisy.kinds", {"swapp": 1},
         r"mixtures\.noisy\.kinds\.swapp: unknown value 'swapp'\. Did you mean 'swap'\? "
         r"Allowed: boilerplate, cascade, noise, off_domain, repetition, shuffle, swap, "
         r"truncate"),
        ("mixtures.noisy.corrupt_fraction", 1.0, r"corrupt_fraction: must be in \[0, 1\)"),
        ("mixtures.noisy.kinds", {"noise": -1}, r"kinds\.noise: must be a number >= 0"),
        ("mixtures.clean.kinds", {"noise": 1}, r"mixtures\.clean\.kinds: has no effect"),
        ("mixtures.noisy.fraction", 0.3,
         r"mixtures\.noisy\.fraction: unknown key\. Did you mean 'corrupt_fraction'\?"),
        ("methods.resure.option", {},
         r"methods\.resure\.option: unknown key\. Did you mean 'options'\?"),
        ("train.seed", 3, r"train\.seed: is set by the sweep itself"),
        ("train.lr_scheduler", "cosine", r"train\.lr_scheduler: is set by the sweep itself"),
        ("suites.chitchat_heldout.judges.reference_nll", {"sizes": "eds"},
         r"reference_nll\.sizes: unknown value 'eds'\. Did you mean 'ends'\? Allowed: all, ends"),
        ("suites.chitchat_heldout.judges.reference_nll", {"sizes": [4, 16]},
         r"reference_nll\.sizes: entry 16 is not 0 \(the base model\) or one of sweep\.sizes"),
        ("judges.reference_nll", {"direction": "down"},
         r"judges\.reference_nll\.direction: unknown value 'down'.*Allowed: higher, lower"),
        ("generation.max_new_token", 3, r"Did you mean 'max_new_tokens'\?"),
        ("analysis.confidence_level", 1.5, r"analysis\.confidence_level: must be in \(0, 1\)"),
        ("extra", {}, r"t\.toml: extra: unknown key"),
    ],
)
def test_errors_name_the_key_and_the_allowed_values(path, value, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(with_change(path, value), "t.toml")


@pytest.mark.parametrize("section", ["sweep", "models", "mixtures", "methods", "suites"])
def test_required_sections(section):
    with pytest.raises(ConfigError, match=rf"{section}: is required"):
        parse_config(with_change(section, None, delete=True), "t.toml")


def test_corrupted_mixture_needs_kinds():
    with pytest.raises(ConfigError, match=r"mixtures\.noisy\.kinds: is required when "
                                          r"corrupt_fraction > 0; Allowed kinds: swap"):
        parse_config(with_change("mixtures.noisy.kinds", None, delete=True), "t.toml")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text, encoding="utf-8")
    return path


BASE_TOML = """
[sweep]
name = "t"
sizes = [4, 8]
seeds = [0]
[models.tiny]
name = "/models/tiny"
[mixtures.clean]
[methods.{method}]
{method_options}
[train]
batch_size = 4
{train}
[suites.chitchat_heldout.judges.{judge}]
"""


def toml(method="uniform", method_options="", train="", judge="reference_nll") -> str:
    return BASE_TOML.format(method=method, method_options=method_options, train=train,
                            judge=judge)


def test_unknown_method_is_refused_with_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"methods\.resur\.method: unknown weighting method "
                                          r"'resur'; did you mean 'resure'\?"):
        load_config(_write(tmp_path, toml(method="resur")))


def test_method_options_are_checked_by_the_method(tmp_path):
    with pytest.raises(ConfigError, match=r"methods\.resure\.options: .*thresold"):
        load_config(_write(tmp_path, toml(method="resure",
                                          method_options="options = { thresold = 2 }")))


def test_unknown_train_key_and_sizes_not_multiple_of_batch(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.max_lenght: unknown key\. Did you mean "
                                          r"'max_length'\? Allowed keys: batch_size, "):
        load_config(_write(tmp_path, toml(train="max_lenght = 64")))
    with pytest.raises(ConfigError, match=r"train: save_at_samples \[4\] must be positive "
                                          r"multiples of the effective batch size 8"):
        load_config(_write(tmp_path, toml(train="grad_accum = 2")))


def test_unknown_judge_and_backend(tmp_path):
    with pytest.raises(ConfigError, match=r"judges\.reference_nlll\.judge: unknown judge "
                                          r"'reference_nlll'\. Did you mean 'reference_nll'\?"):
        load_config(_write(tmp_path, toml(judge="reference_nlll")))
    text = toml() + '\n[generation]\nbackend = "hff"\n'
    with pytest.raises(ConfigError, match=r"generation\.backend: unknown backend 'hff'\. "
                                          r"Did you mean 'hf'\?"):
        load_config(_write(tmp_path, text))


def test_invalid_toml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"sweep\.toml: not valid TOML"):
        load_config(_write(tmp_path, "[sweep\nname="))


@pytest.mark.parametrize("name", ["default", "quick", "gpu"])
def test_bench_configs_validate(name):
    config = load_config(ROOT / "bench" / f"{name}.toml")
    plan = expand(config)
    assert len(plan.passes) == len(config.models) * len(config.methods) * len(
        config.mixtures) * len(config.seeds)
    assert len(plan.runs) == len(plan.passes) * len(config.sizes)
    # Run directories are unique and named by hash.
    assert len({r.dirname for r in plan.all_runs}) == len(plan.all_runs)


def test_default_bench_keeps_the_grid_axes():
    config = load_config(ROOT / "bench" / "default.toml")
    assert {m.method for m in config.methods} == {"uniform", "resure", "loss_truncation"}
    assert len(config.sizes) >= 4 and len(config.seeds) >= 2
    fractions = sorted(m.corrupt_fraction for m in config.mixtures)
    assert fractions[0] == 0 and fractions[1] == pytest.approx(0.3, abs=0.05)
    assert fractions[2] == pytest.approx(0.6, abs=0.05)
    with open(ROOT / "bench" / "default.toml", "rb") as f:
        assert tomllib.load(f)["models"]["smollm2"]["name"] == "smollm2-135m-instruct"


# --------------------------------------------------------------------------------------
# Checks that used to pass validation and fail at run time (or in --dry-run) instead.


def test_unknown_model_name_is_refused_with_the_known_names(tmp_path):
    text = toml().replace('name = "/models/tiny"', 'name = "smollm3"')
    with pytest.raises(ConfigError, match=r"models\.tiny\.name: unknown model 'smollm3': "
                                          r"neither a known name nor a directory.*"
                                          r"Known names: smollm2-135m-instruct"):
        load_config(_write(tmp_path, text))


def test_model_names_and_folders_next_to_the_file_are_accepted(tmp_path):
    (tmp_path / "mymodel").mkdir()
    text = toml().replace('name = "/models/tiny"', 'name = "mymodel"')
    config = load_config(_write(tmp_path, text))
    assert config.models[0].name == str(tmp_path / "mymodel")
    text = toml().replace('name = "/models/tiny"', 'name = "smollm2-135m-instruct"')
    assert load_config(_write(tmp_path, text)).models[0].name == "smollm2-135m-instruct"


def test_missing_model_directory_is_a_note_until_the_sweep_runs(tmp_path):
    text = toml().replace('name = "/models/tiny"', 'name = "../models/absent"')
    config = load_config(_write(tmp_path, text))  # validates: --dry-run must work
    expected = str((tmp_path.parent / "models" / "absent").resolve())
    assert missing_model_dirs(config) == [
        f"models.tiny.name: model directory {expected} not found: download it first "
        "(see the file's header)"]
    with pytest.raises(ConfigError, match=r"sweep\.toml: models\.tiny\.name: model directory "
                                          r".*absent not found: download it first"):
        require_model_dirs(config)
    with pytest.raises(ConfigError, match=r"model directory .*absent not found"):
        Sweep(config, tmp_path / "results").run()
    assert not (tmp_path / "results").exists()  # refused before anything was written


def test_gpu_bench_dry_run_lists_runs_and_running_it_fails_cleanly(tmp_path, capsys):
    from resure.cli import main

    gpu = str(ROOT / "bench" / "gpu.toml")
    results = str(tmp_path / "results")
    assert main(["sweep", gpu, "--dry-run", "--results", results]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^qwen2_5_1_5b\.base-\w+ ", out, re.M)
    assert "109 runs; stages done: 0" in out
    assert "model directory" in out and "Qwen2.5-1.5B-Instruct not found: download it first" in out
    assert ("estimated time left: no estimate (stage times are measured on first run; the "
            "built-in figures are for SmolLM2-135M on 2 CPU cores)") in out
    assert main(["sweep", gpu, "--results", results]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "Qwen2.5-1.5B-Instruct not found" in err
    assert "Traceback" not in err and not Path(results).exists()


def test_smollm2_sweeps_keep_the_built_in_estimate(tmp_path):
    status = Sweep(load_config(ROOT / "bench" / "quick.toml"), tmp_path).status()
    assert status.estimate_s > 0 and status.notes == []
    assert defaults_apply(["smollm2-135m-instruct", "/cache/smollm2-135m-instruct"])
    assert not defaults_apply(["smollm2-135m-instruct", "/models/Qwen2.5-1.5B-Instruct"])


def test_missing_data_files_are_refused_with_the_resolved_path(tmp_path):
    text = toml() + '[data]\nsource = "nofile.jsonl"\n'
    path = re.escape(str(tmp_path / "nofile.jsonl"))
    with pytest.raises(ConfigError, match=rf"data\.source: data file {path} not found"):
        load_config(_write(tmp_path, text))
    text = toml().replace("[mixtures.clean]",
                          '[mixtures.clean]\nsources = { "nofile.jsonl" = 1, chitchat = 1 }')
    with pytest.raises(ConfigError, match=rf"mixtures\.clean\.sources\.nofile\.jsonl: data "
                                          rf"file {path} not found"):
        load_config(_write(tmp_path, text))
    (tmp_path / "some.jsonl").write_text("", encoding="utf-8")
    text = toml().replace("[mixtures.clean]",
                          '[mixtures.clean]\nsources = { "some.jsonl" = 1, chitchat = 1 }')
    config = load_config(_write(tmp_path, text))
    assert config.mixtures[0].sources == ((str(tmp_path / "some.jsonl"), 0.5), ("chitchat", 0.5))


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("[generation]\noptions = { batchsize = 8 }",
         r"generation\.options\.batchsize: backend 'hf' has no option 'batchsize'; did you "
         r"mean 'batch_size'\? Options: "),
        ("[generation]\noptions = { model = 'x' }",
         r"generation\.options\.model: is set by the sweep itself"),
        ("[suites.chitchat_heldout]\noptions = { max_turn = 2 }",
         r"suites\.chitchat_heldout\.options\.max_turn: suite 'chitchat_heldout' has no "
         r"option 'max_turn'; did you mean 'max_turns'\?"),
        ("[judges.reference_nll]\noptions = { batchsize = 2 }",
         r"judges\.reference_nll\.options\.batchsize: judge 'reference_nll' has no option "
         r"'batchsize'; did you mean 'batch_size'\?"),
        ("[judges.reference_nll]\noptions = { adapter = 'a' }",
         r"judges\.reference_nll\.options\.adapter: is set by the sweep itself"),
        ("[judges.llm]\noptions = { base_url = 'http://x' }",
         r"judges\.llm\.options: judge 'llm' needs option\(s\) model"),
        ("[judges.llm]\noptions = { model = 'm', concurency = 2 }",
         r"judges\.llm\.options\.concurency: judge 'llm' has no option 'concurency'; did "
         r"you mean 'concurrency'\?"),
    ],
)
def test_backend_suite_and_judge_options_are_checked(tmp_path, extra, match):
    judge = "llm" if "judges.llm" in extra else "reference_nll"
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, toml(judge=judge) + extra + "\n"))


def test_options_the_sweep_passes_are_allowed(tmp_path):
    text = toml() + ("[generation]\noptions = { batch_size = 2 }\n"
                     "[judges.reference_nll]\noptions = { batch_size = 2 }\n"
                     "[suites.chitchat_heldout]\noptions = { max_turns = 2 }\n")
    config = load_config(_write(tmp_path, text))
    assert config.generation.options == {"batch_size": 2}


def test_unknown_key_is_reported_before_the_rules_it_breaks():
    doc = with_change("mixtures.noisy.corrupt_fracton", 0.6)
    del doc["mixtures"]["noisy"]["corrupt_fraction"]
    with pytest.raises(ConfigError, match=r"mixtures\.noisy\.corrupt_fracton: unknown key\. "
                                          r"Did you mean 'corrupt_fraction'\?"):
        parse_config(doc, "t.toml")


@pytest.mark.parametrize(
    ("train", "match"),
    [
        ('lr = "fast"', r"train\.lr: expected a number, got 'fast'"),
        ("max_length = 1.5", r"train\.max_length: expected an integer, got 1\.5"),
        ("full_finetune = 1", r"train\.full_finetune: expected true or false, got 1"),
        ("lora_target_modules = [1]",
         r"train\.lora_target_modules: expected every entry to be a string, got 1"),
        ('num_threads = "2"', r"train\.num_threads: expected an integer, got '2'"),
    ],
)
def test_train_values_are_checked_against_train_config_types(tmp_path, train, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, toml(train=train)))


def test_train_values_of_the_right_type_pass(tmp_path):
    config = load_config(_write(tmp_path, toml(
        train='lr = 1\nlora_target_modules = ["q_proj"]\nfull_finetune = false')))
    assert config.train["lr"] == 1


def test_judge_cache_is_resolved_against_the_sweep_file(tmp_path):
    text = toml(judge="llm") + "[judges.llm]\noptions = { model = 'm', cache = 'c/j.sqlite' }\n"
    config = load_config(_write(tmp_path, text))
    assert config.judge("llm").options["cache"] == str(tmp_path / "c" / "j.sqlite")
    gpu = load_config(ROOT / "bench" / "gpu.toml")
    assert Path(gpu.judge("llm").options["cache"]).is_absolute()
