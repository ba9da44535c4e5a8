"""Benchmark definitions (``suites/<name>.toml``) and locating a suite's data files.

A definition names the files a suite reads, the environment variable pointing at their
directory, the public source they come from (and, optionally, URLs to fetch them), the
history mode and sampling temperature the protocol asks for, and suite-specific tables
such as MT-Bench-101's per-task rubrics.

The data directory is found, in this order, from the ``data_dir`` argument (the CLI's
``--data-dir``) and then from the suite's environment variable. A missing directory or
file raises :class:`SuiteDataError` naming both ways, and the public source.

Notes:
    Definitions are read from the ``suites/`` folder at the project's root (or from
    ``$RESURE_SUITES_DIR``), so they are found in a source checkout or an editable
    install; a wheel does not carry them.
"""

from __future__ import annotations

import logging
import os
import tomllib
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from resure.eval.types import EvalItem
from resure.io import atomic_path, read_numbered_jsonl

logger = logging.getLogger(__name__)

SUITES_DIR_ENV = "RESURE_SUITES_DIR"
DOWNLOAD_TIMEOUT_S = 60.0


class SuiteDataError(ValueError):
    """Benchmark files that are missing or break the format; the message says which."""


@dataclass(frozen=True)
class SuiteDefinition:
    """One ``suites/<name>.toml`` file.

    Attributes:
        name: the suite's registry name.
        description: one line on what it measures.
        source: the public source of the files (named in error messages).
        env_var: environment variable naming the data directory, if the suite has files.
        files: file names expected in the data directory.
        urls: file name -> public URL, for :func:`download_files`.
        history: ``"own"`` or ``"golden"``.
        temperature: sampling temperature the protocol asks for (0 = greedy).
        expected_items: number of items of the full published file (checked on load).
        table: every other key of the file (rubrics, subset rules), as parsed.
    """

    name: str
    description: str
    source: str
    history: str
    temperature: float = 0.0
    env_var: str | None = None
    files: tuple[str, ...] = ()
    urls: dict[str, str] = field(default_factory=dict)
    expected_items: int | None = None
    table: dict[str, Any] = field(default_factory=dict)


def suites_dir() -> Path:
    """``$RESURE_SUITES_DIR`` if set, else ``<project root>/suites``."""
    env = os.environ.get(SUITES_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[3] / "suites"


@cache
def load_definition(name: str) -> SuiteDefinition:
    """Parse ``suites/<name>.toml``; unknown keys are kept in ``table``."""
    path = suites_dir() / f"{name}.toml"
    if not path.is_file():
        raise FileNotFoundError(
            f"suite definition {path} not found; set {SUITES_DIR_ENV} to the folder "
            "holding the suites/*.toml files of a resure checkout"
        )
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    known = {
        "name", "description", "source", "history", "temperature", "env_var", "files",
        "urls", "expected_items",
    }
    missing = {"name", "description", "source", "history"} - raw.keys()
    if missing:
        raise SuiteDataError(f"{path}: missing keys {sorted(missing)}")
    if raw["history"] not in ("own", "golden"):
        raise SuiteDataError(f"{path}: history must be 'own' or 'golden', not {raw['history']!r}")
    return SuiteDefinition(
        name=raw["name"],
        description=raw["description"],
        source=raw["source"],
        history=raw["history"],
        temperature=float(raw.get("temperature", 0.0)),
        env_var=raw.get("env_var"),
        files=tuple(raw.get("files", ())),
        urls=dict(raw.get("urls", {})),
        expected_items=raw.get("expected_items"),
        table={k: v for k, v in raw.items() if k not in known},
    )


def locate_files(
    definition: SuiteDefinition, data_dir: str | os.PathLike | None, download: bool = False
) -> dict[str, Path]:
    """Paths of the suite's files, from ``data_dir`` or the environment variable.

    With ``download=True`` missing files are fetched from the definition's URLs into the
    directory first (which needs network access).

    Raises:
        SuiteDataError: no directory given, or a file missing; the message names the flag,
            the environment variable and the public source.
    """
    directory = _data_dir(definition, data_dir)
    if download:
        download_files(definition, directory)
    paths = {name: directory / name for name in definition.files}
    missing = [name for name, p in paths.items() if not p.is_file()]
    if missing:
        raise SuiteDataError(
            f"{definition.name}: {', '.join(missing)} not found in {directory}. "
            + _where_hint(definition)
        )
    return paths


def _data_dir(definition: SuiteDefinition, data_dir: str | os.PathLike | None) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(definition.env_var) if definition.env_var else None
    if env:
        return Path(env).expanduser()
    raise SuiteDataError(
        f"{definition.name}: no data directory given. " + _where_hint(definition)
    )


def _where_hint(definition: SuiteDefinition) -> str:
    files = ", ".join(definition.files)
    hint = (
        f"Pass --data-dir DIR (data_dir= in Python) or set {definition.env_var}=DIR, "
        f"where DIR holds {files} in the original format of {definition.source}."
    )
    if definition.urls:
        hint += (
            " Downloading them needs network access to "
            f"{', '.join(definition.urls.values())}: add --download to fetch them into DIR."
        )
    else:
        hint += f" Downloading them needs network access to {definition.source}."
    return hint


def download_files(definition: SuiteDefinition, directory: Path) -> list[Path]:
    """Fetch the definition's files that ``directory`` lacks from their public URLs.

    Each file is written atomically. Raises :class:`SuiteDataError` naming the URL and
    the cause when the network is unreachable (for example on an offline machine).
    """
    fetched = []
    for name, url in definition.urls.items():
        target = directory / name
        if target.is_file():
            continue
        logger.info("downloading %s from %s", name, url)
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                body = response.read()
        except (urllib.error.URLError, OSError) as e:
            raise SuiteDataError(
                f"{definition.name}: could not download {url} ({e}); the machine needs "
                f"network access, or place {name} in {directory} by hand"
            ) from e
        with atomic_path(target) as tmp:
            tmp.write_bytes(body)
        fetched.append(target)
    return fetched


def read_jsonl_records(path: Path) -> list[tuple[int, Any]]:
    """``(line number, parsed value)`` for each non-blank line; bad JSON raises
    :class:`SuiteDataError` naming the line."""
    return read_numbered_jsonl(path, error=SuiteDataError)


def split_rounds(
    where: str, rounds: Any, field: str, keys: tuple[str, str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The two texts of each round of a dialogue, e.g. ``keys=("user", "bot")`` gives
    ``(user turns, bot turns)``; ``field`` (the rounds' key) and ``where`` (file:line)
    name the record in errors.

    Raises:
        SuiteDataError: ``rounds`` is not a non-empty list of objects holding a non-empty
            string under each key.
    """
    if not isinstance(rounds, list) or not rounds:
        raise SuiteDataError(f"{where}: {field!r} must be a non-empty list of rounds")
    first, second = [], []
    for k, turn in enumerate(rounds):
        if not isinstance(turn, dict):
            raise SuiteDataError(
                f"{where}: round {k} must be an object with {keys[0]!r} and {keys[1]!r}"
            )
        for key, out in zip(keys, (first, second), strict=True):
            text = turn.get(key)
            if not isinstance(text, str) or not text.strip():
                raise SuiteDataError(f"{where}: round {k} needs a non-empty string {key!r}")
            out.append(text)
    return tuple(first), tuple(second)


def check_unique_ids(items: Sequence[EvalItem], path: Path) -> None:
    """Refuse a file in which a question id appears more than once, listing those ids."""
    ids = [item.question_id for item in items]
    duplicates = sorted({q for q in ids if ids.count(q) > 1})
    if duplicates:
        raise SuiteDataError(f"{path}: question ids appear more than once: {duplicates}")


def check_count(definition: SuiteDefinition, path: Path, n: int) -> None:
    """Warn when a file holds another number of items than the published one."""
    if definition.expected_items is not None and n != definition.expected_items:
        logger.warning(
            "%s: %s holds %d items, the published file %d; using them as they are",
            definition.name, path, n, definition.expected_items,
        )
