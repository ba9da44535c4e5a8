"""Fine-tuning with per-turn loss weights on top of transformers' ``Trainer`` and peft.

>>> from resure.train import TrainConfig, train
>>> result = train(TrainConfig(model="smollm2-135m-instruct", data="chitchat:train",
...                            output_dir="runs/demo", method="resure"))  # doctest: +SKIP
"""

from resure.train.config import TrainConfig
from resure.train.run import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
