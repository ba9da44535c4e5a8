"""``transformers serve`` on loopback, for the integration tests of the OpenAI-compatible
clients (the openai backend, the llm judge).

>>> with transformers_serve(model_dir, tmp_path / "serve.log") as served:
...     client = OpenAI(base_url=served.base_url, api_key="unused")
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

STARTUP_TIMEOUT_S = 180
STOP_TIMEOUT_S = 20


class Served(NamedTuple):
    """A running server: its ``/v1`` root and the model names it lists."""

    base_url: str
    models: list[str]


def free_port() -> int:
    """A loopback port nothing listens on (free when asked; another process may take it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def transformers_cli() -> str:
    """The ``transformers`` command of this environment; skips the test if there is none."""
    cli = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which(
        "transformers")
    if cli is None:
        pytest.skip("the transformers CLI is not installed (pip install transformers[serving])")
    return cli


@contextmanager
def transformers_serve(model_dir: str | os.PathLike, log: Path) -> Iterator[Served]:
    """Serve ``model_dir`` on CPU until the block ends; the server's output goes to ``log``.

    Fails the test, showing the log's tail, if the server exits or does not list its
    models within :data:`STARTUP_TIMEOUT_S`.
    """
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [transformers_cli(), "serve", str(model_dir), "--host", "127.0.0.1",
             "--port", str(port), "--device", "cpu", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        yield Served(base_url, _wait_for_models(base_url, proc, log))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_models(base_url: str, proc: subprocess.Popen, log: Path) -> list[str]:
    """Poll GET /v1/models until the server answers; fail early if it exits."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"transformers serve exited with {proc.returncode}:\n"
                        f"{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:
                return [m["id"] for m in json.load(r)["data"]]
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"transformers serve did not answer within {STARTUP_TIMEOUT_S} s:\n"
                f"{log.read_text()[-4000:]}")
