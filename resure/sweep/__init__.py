"""Sweeps: grids of fine-tuning runs over methods, data-quality mixtures, sizes and seeds.

>>> from resure.sweep import Sweep, load_config
>>> Sweep(load_config("bench/quick.toml"), "results/quick").run()  # doctest: +SKIP
"""

from resure.sweep.config import ConfigError, SweepConfig, load_config
from resure.sweep.runner import Sweep

__all__ = ["ConfigError", "Sweep", "SweepConfig", "load_config"]
