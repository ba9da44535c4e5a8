"""What produced a result: installed package versions and the commit of the checkout.

Manifests (training configs, sweep runs) record these so that a number can be traced back
to the code and libraries that made it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

GIT_TIMEOUT_S = 10


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """The installed version of each distribution, None for one not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> dict[str, Any]:
    """The commit of the resure checkout and whether it has uncommitted changes.

    Notes:
        Both are None where git is missing or the package is not a git checkout (an
        installed wheel).
    """
    root = Path(__file__).resolve().parents[1]
    try:
        head = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": bool(dirty)}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          timeout=GIT_TIMEOUT_S, check=True).stdout.strip()
