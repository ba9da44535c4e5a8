"""Judges; importing this package registers the built-in ones in ``JUDGES``.

The judge modules import their engines (openai, sentence-transformers, torch) lazily, so
registering is cheap.
"""

# The judge modules are imported for their registration side effect.
from resure.eval.judges import llm, reference  # noqa: F401
from resure.eval.judges.base import JUDGES, Judge, get_judge

__all__ = ["JUDGES", "Judge", "get_judge"]
