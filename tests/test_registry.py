"""The shared registry and the weighting-method registry built on it."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
import torch

from resure.registry import Registry, UnknownNameError
from resure.weighting import (
    WEIGHTINGS,
    TurnBatch,
    WeightingMethod,
    available_weightings,
    get_weighting,
    register_weighting,
)


class Constant(WeightingMethod):
    def __init__(self, value: float = 1.0):
        self.value = value

    def weights(self, batch: TurnBatch) -> torch.Tensor:
        return batch.present.float() * self.value


@pytest.fixture
def registry() -> Registry[WeightingMethod]:
    return Registry("weighting method", WeightingMethod)


@pytest.fixture
def scratch_weightings(monkeypatch):
    """WEIGHTINGS with its entries restored after the test."""
    monkeypatch.setattr(WEIGHTINGS, "_entries", dict(WEIGHTINGS._entries))
    monkeypatch.setattr(WEIGHTINGS, "_aliases", dict(WEIGHTINGS._aliases))
    return WEIGHTINGS


def test_decorator_registers_with_aliases(registry):
    @registry.register("flat", aliases=("level", "even"))
    class Flat(Constant):
        pass

    assert registry.get("flat") is Flat
    assert registry.get("even") is Flat and "level" in registry
    assert registry.names() == ["flat"]
    assert Flat.name == "flat"


def test_name_clash_and_base_class_are_checked(registry):
    registry.register("flat")(Constant)

    class Other(Constant):
        pass

    with pytest.raises(ValueError, match="name 'flat' is already registered"):
        registry.register("flat")(Other)
    with pytest.raises(TypeError, match="is not a subclass of"):
        registry.register("plain")(dict)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'resure'") as info:
        get_weighting("resur")
    assert isinstance(info.value, KeyError)
    # Other test modules may register methods of their own; the built-ins are always listed.
    known = str(info.value).split("Known: ")[1].split(", ")
    assert {"loss_truncation", "resure", "uniform"} <= set(known)
    assert known == sorted(known)
    with pytest.raises(KeyError, match="unknown weighting method 'xyz'"):
        get_weighting("xyz")


def test_register_weighting_and_get_with_options(scratch_weightings):
    register_weighting("constant_test")(Constant)
    method = get_weighting("constant_test", value=0.5)
    assert isinstance(method, Constant) and method.value == 0.5
    assert "constant_test" in available_weightings()


def test_available_weightings_loads_the_builtins_in_a_fresh_process():
    code = "from resure.weighting import available_weightings; print(available_weightings())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['loss_truncation', 'resure', 'uniform']"


def write_plugin(root, group: str) -> None:
    """A fake installed distribution declaring entry points in ``group``."""
    info = root / "fakeplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{group}]\n"
        "plugged = fakeplug_mod:Plugged\n"
        "broken = fakeplug_mod:NotAMethod\n"
        "missing = fakeplug_mod:DoesNotExist\n"
        "resure = fakeplug_mod:Plugged\n"
    )
    (root / "fakeplug_mod.py").write_text(
        textwrap.dedent(
            """
            import torch
            from resure.weighting import WeightingMethod

            class Plugged(WeightingMethod):
                def weights(self, batch):
                    return torch.zeros_like(batch.losses)

            class NotAMethod:
                pass
            """
        )
    )


def test_entry_points_are_discovered_and_broken_ones_skipped(tmp_path, monkeypatch, caplog):
    write_plugin(tmp_path, "resure.test_plugins")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("weighting method", WeightingMethod, "resure.test_plugins")
    with caplog.at_level(logging.WARNING, logger="resure.registry"):
        names = registry.names()
    assert names == ["plugged", "resure"]
    assert registry.get("plugged").__module__ == "fakeplug_mod"
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "'broken'" in warned and "'missing'" in warned


def test_weighting_entry_points_do_not_replace_builtins(tmp_path, monkeypatch, scratch_weightings):
    write_plugin(tmp_path, "resure.weightings")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(WEIGHTINGS, "_scanned", False)
    assert type(get_weighting("plugged")).__module__ == "fakeplug_mod"
    assert type(get_weighting("resure")).__module__ == "resure.weighting.methods.resure"


def test_case_insensitive_suggestion_and_sentence_end():
    with pytest.raises(UnknownNameError, match=r"'ReSURE'; did you mean 'resure'\? Known: "):
        get_weighting("ReSURE")
    with pytest.raises(UnknownNameError, match=r"'xyz'\. Known: "):
        get_weighting("xyz")


class _Base:
    pass


def test_options_are_checked_against_the_constructor_before_building():
    registry: Registry[_Base] = Registry("widget", _Base)

    @registry.register("w")
    class W(_Base):
        def __init__(self, model: str, batch_size: int = 8):
            self.model, self.batch_size = model, batch_size

    with pytest.raises(ValueError, match=r"widget 'w' has no option 'batchsize'; did you mean "
                                         r"'batch_size'\? Options: model, batch_size"):
        registry.create("w", model="m", batchsize=2)
    with pytest.raises(ValueError, match=r"widget 'w' needs option\(s\) model"):
        registry.create("w")
    built = registry.create("w", model="m", batch_size=2)
    assert (built.model, built.batch_size) == ("m", 2)
