"""Evaluation: multi-turn suites, generation backends and judges."""
