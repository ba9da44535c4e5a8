"""Built-in weighting methods; importing this package registers them."""

from resure.weighting.methods import loss_truncation, resure, uniform

__all__ = ["loss_truncation", "resure", "uniform"]
