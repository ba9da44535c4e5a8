"""Evaluation suites; importing this package registers the built-in ones in ``SUITES``."""

# The suite modules are imported for their registration side effect.
from resure.eval.suites import chitchat, mt_bench, mt_bench_101, mt_eval  # noqa: F401
from resure.eval.suites.base import SUITES, Suite, get_suite
from resure.eval.suites.definitions import SuiteDataError, SuiteDefinition, load_definition

__all__ = ["SUITES", "Suite", "SuiteDataError", "SuiteDefinition", "get_suite",
           "load_definition"]
