"""Sweep-file validation: every broken rule names its key and what is allowed."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from resure.sweep.config import ConfigError, load_config, parse_config
from resure.sweep.plan import expand

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
