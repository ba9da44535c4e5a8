"""Generation backends; importing this package registers the built-in ones in ``BACKENDS``.

The modules import their engines (torch, vLLM, openai) lazily, so registering is cheap.
"""

# The backend modules are imported for their registration side effect.
from resure.eval.backends import hf, openai_api, vllm_offline  # noqa: F401
from resure.eval.backends.base import (
    BACKENDS,
    Backend,
    GenerationError,
    SamplingParams,
    TurnBackend,
    TurnFailure,
    TurnRequest,
    get_backend,
)

__all__ = ["BACKENDS", "Backend", "GenerationError", "SamplingParams", "TurnBackend",
           "TurnFailure", "TurnRequest", "get_backend"]
