"""Generation through any OpenAI-compatible chat server, with the official ``openai`` client.

Requests of a round run concurrently in a thread pool of ``concurrency`` workers. Time
limits and retries are the client library's own (``timeout``, ``max_retries``: it
retries connection errors, 408/409/429 and 5xx with exponential back-off). A request
that still fails, or returns no text, becomes a
:class:`~resure.eval.backends.base.TurnFailure`: the item gets no answer and
:class:`~resure.eval.backends.base.GenerationError` lists it, never an empty string.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from resure.eval.backends.base import (
    BACKENDS,
    Completion,
    SamplingParams,
    TurnBackend,
    TurnFailure,
    TurnRequest,
)
from resure.eval.openai_client import openai_client

logger = logging.getLogger(__name__)


@BACKENDS.register("openai")
class OpenAIBackend(TurnBackend):
    """Chat completions from an OpenAI-compatible server.

    Args:
        model: the model name the server knows (``model`` of the request).
        base_url: the server's URL, e.g. ``http://127.0.0.1:8000/v1`` (default: the
            client's, i.e. ``$OPENAI_BASE_URL`` or OpenAI's API).
        api_key_env: name of the environment variable holding the API key. Required for
            OpenAI's own API (no ``base_url``); a local server that ignores keys gets the
            placeholder ``"unused"`` when the variable is not set.
        concurrency: requests in flight at once.
        timeout: seconds per request attempt (client library).
        max_retries: retries per request (client library).
        model_id: the ``model_id`` written in the answers (default: ``model``).
        client: an ``openai.OpenAI`` instance to use instead of building one.

    Notes:
        The server applies its own chat template, unknown here, so the answers record
        ``chat_template_hash`` as None. ``seed`` is sent with each request; whether it
        makes sampling reproducible is up to the server.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 3,
        model_id: str | None = None,
        client: Any = None,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.model = model
        self.base_url = base_url
        self.concurrency = concurrency
        self.model_id = model_id or model
        self.client = client if client is not None else openai_client(
            base_url, api_key_env, timeout, max_retries
        )

    def identity(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": str(self.client.base_url),
            "adapter": None,
            "chat_template_hash": None,
        }

    def complete(
        self, requests: Sequence[TurnRequest], sampling: SamplingParams,
        progress: Callable[[int], object],
    ) -> list[Completion]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._one, r, sampling) for r in requests]
            results = []
            for future in futures:
                results.append(future.result())
                progress(1)
        failures = [r for r in results if isinstance(r, TurnFailure)]
        if failures:
            logger.warning("%d of %d requests failed after retries; first: %s",
                           len(failures), len(requests), failures[0].error)
        return results

    def _one(self, request: TurnRequest, sampling: SamplingParams) -> Completion:
        import openai

        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=list(request.messages),
                temperature=request.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                seed=sampling.seed,
            )
        except openai.APIError as e:
            return TurnFailure(request.question_id, request.turn + 1, f"{type(e).__name__}: {e}")
        if not response.choices or response.choices[0].message.content is None:
            reason = response.choices[0].finish_reason if response.choices else "no choices"
            return TurnFailure(request.question_id, request.turn + 1,
                               f"the server returned no text (finish_reason={reason})")
        return response.choices[0].message.content
