"""The one place an ``openai.OpenAI`` client is built, for the backend and the judge.

Retries, back-off (including ``Retry-After``) and timeouts are the client library's.
"""

from __future__ import annotations

import os
from typing import Any


def openai_client(
    base_url: str | None, api_key_env: str, timeout: float, max_retries: int
) -> Any:
    """An ``openai.OpenAI`` client for ``base_url`` (None: OpenAI's own API).

    The key is read from the environment variable ``api_key_env``. It is required for
    OpenAI's own API; a local server (vLLM, ``transformers serve``) ignores keys, so one
    without the variable set gets the placeholder ``"unused"`` the client insists on.
    """
    from openai import OpenAI  # deferred: keeps `resure --help` fast

    api_key = os.environ.get(api_key_env)
    if not api_key and base_url is None:
        raise ValueError(
            f"environment variable {api_key_env} is not set; set {api_key_env} to the API key, "
            "name another variable with --api-key-env, or give --base-url for a server "
            "that needs no key"
        )
    return OpenAI(
        base_url=base_url, api_key=api_key or "unused", timeout=timeout, max_retries=max_retries
    )
