"""Step-time and memory overhead of ReSURE weighting against uniform weighting.

Both methods run through the same code path (``WeightedTrainer.training_step``: forward
without labels, per-token and per-turn losses, weights, weighted loss, backward) followed
by the same AdamW step, on the same fixed list of real ``chitchat:train`` batches, with
SmolLM2-135M-Instruct and a LoRA adapter (the training defaults) unless ``--model`` says
otherwise. Only the weighting method differs.

Time. One process holds the model and one trainer per method. Each batch is run once
with each method, alternating which goes first (ABBA), so that drift (thermal state,
other load on a shared machine) affects both alike. The first ``--warmup`` batches are
not timed. Reported: the median step time per method and the ratio resure / uniform.
On a GPU the clock is read after ``torch.cuda.synchronize()``.

Memory. Each method runs alone in a fresh subprocess (so one method's allocations cannot
raise the other's peak). After the model is loaded and one warm-up step has run (so that
lazily allocated optimizer state and allocator caches exist in both), the peak is reset
and the timed steps run again. On the CPU the figure is the process's peak resident set
size over those steps (Linux ``VmHWM`` after writing ``5`` to ``/proc/self/clear_refs``;
``tracemalloc`` does not see torch's allocations); on a GPU it is
``torch.cuda.max_memory_allocated``. Reported: the peak per method and the ratio, plus
the peak minus the resident size before the steps (what training itself adds).

Usage::

    python bench/train_overhead.py                       # SmolLM2 + LoRA, ~2-3 min on 2 cores
    python bench/train_overhead.py --model path/to/model --steps 20

Notes:
    The figures are noisy on a shared machine; medians and interleaving damp but do not
    remove that. ReSURE is run with ``warmup=2`` so that its z-score path (and
    down-weighting) is active from the third step on; the log prints the fraction of
    turns it down-weighted. Resident memory on the CPU includes the model and the
    Python runtime, so the peak ratio is close to 1 by construction; the "added" column
    shows the training-time part.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("uniform", "resure")
METHOD_OPTIONS = {"uniform": {}, "resure": {"warmup": 2}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name or directory")
    p.add_argument("--cache-dir", default=None, help="converted-model cache")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--steps", type=int, default=8, help="timed steps per method")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per method first")
    p.add_argument("--memory-steps", type=int, default=3, help="steps per memory subprocess")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ----------------------------------------------------------------- set-up


def load_batches(tokenizer, args) -> list[dict]:
    """The first ``warmup + steps`` batches of encodable chitchat:train dialogues."""
    from resure.data import load_conversations
    from resure.tokenize import encode_many
    from resure.train.data import DialogueCollator, DialogueDataset

    needed = (args.warmup + args.steps) * args.batch_size
    convs = load_conversations("chitchat:train", policy="skip").conversations[: needed * 2]
    encoded = encode_many(convs, tokenizer, max_length=args.max_length, policy="skip").encoded
    if len(encoded) < needed:
        raise SystemExit(f"only {len(encoded)} encodable dialogues, need {needed}")
    dataset = DialogueDataset(encoded[:needed])
    collate = DialogueCollator(tokenizer.pad_token_id)
    bs = args.batch_size
    return [collate([dataset[i] for i in range(s, s + bs)]) for s in range(0, needed, bs)]


def build(args, workdir: str):
    """Model (with LoRA unless --full), optimizer, batches and one trainer per method."""
    import torch
    from transformers import TrainingArguments

    from resure.models import load_model_and_tokenizer, resolve_model
    from resure.train.config import TrainConfig
    from resure.train.trainer import WeightedTrainer
    from resure.weighting import get_weighting

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(
        resolve_model(args.model, cache_dir=args.cache_dir), trainable=True
    )
    if not args.full:
        from peft import LoraConfig, get_peft_model

        d = TrainConfig(model="-", output_dir="-")
        lora = LoraConfig(task_type="CAUSAL_LM", r=d.lora_r, lora_alpha=d.lora_alpha,
                          lora_dropout=d.lora_dropout, target_modules=d.lora_target_modules)
        model = get_peft_model(model, lora)
    model.train()
    batches = load_batches(tokenizer, args)
    targs = TrainingArguments(output_dir=workdir, remove_unused_columns=False, report_to=[],
                              use_cpu=not torch.cuda.is_available())
    ids = tuple(str(i) for i in range(len(batches) * args.batch_size))
    trainers = {
        m: WeightedTrainer(model=model, args=targs, method=get_weighting(m, **METHOD_OPTIONS[m]),
                           sample_ids=ids)
        for m in METHODS
    }
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    return model, optimizer, batches, trainers


def train_step(trainer, model, optimizer, batch) -> float:
    """One full step (forward, weighted loss, backward, optimizer); seconds."""
    import torch

    from resure.losses import shift_turn_index

    tokens = int((shift_turn_index(batch["turn_index"]) >= 0).sum())
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.training_step(model, batch, tokens)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


# ----------------------------------------------------------------- time


def measure_time(args, workdir: str) -> dict:
    model, optimizer, batches, trainers = build(args, workdir)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for i, batch in enumerate(batches):
        order = METHODS if i % 2 == 0 else METHODS[::-1]
        for m in order:
            seconds = train_step(trainers[m], model, optimizer, batch)
            if i >= args.warmup:
                times[m].append(seconds)
        print(f"  batch {i + 1}/{len(batches)}: "
              + ", ".join(f"{m} {times[m][-1]:.3f}s" for m in METHODS if times[m]),
              file=sys.stderr)
    diag = trainers["resure"].weight_diagnostics.summary()
    return {
        "median_s": {m: statistics.median(t) for m, t in times.items()},
        "all_s": times,
        "resure_frac_downweighted": diag["frac_downweighted"],
        "tokens_per_batch": statistics.mean(int(b["attention_mask"].sum()) for b in batches),
    }


# ----------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def memory_worker(args, workdir: str) -> dict:
    """Runs in a subprocess: peak memory of ``args.worker`` over the timed steps."""
    import torch

    model, optimizer, batches, trainers = build(args, workdir)
    trainer = trainers[args.worker]
    train_step(trainer, model, optimizer, batches[0])  # allocate optimizer state, caches
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _status_kib("VmRSS") * 1024
    for batch in batches[1 : 1 + args.memory_steps]:
        train_step(trainer, model, optimizer, batch)
    if torch.cuda.is_available():
        peak, kind = torch.cuda.max_memory_allocated(), "cuda max_memory_allocated"
    else:
        peak, kind = _status_kib("VmHWM") * 1024, "peak RSS (VmHWM)"
    return {"peak_bytes": peak, "before_bytes": before, "kind": kind}


def measure_memory(args, argv) -> dict:
    results = {}
    for m in METHODS:
        cmd = [sys.executable, __file__, *argv, "--worker", m]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        results[m] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


# ----------------------------------------------------------------- main


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    if args.worker:
        with tempfile.TemporaryDirectory(prefix="resure-bench-") as workdir:
            print(json.dumps(memory_worker(args, workdir)))
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="resure-bench-") as workdir:
        timing = measure_time(args, workdir)
    memory = measure_memory(args, argv)
    report(args, timing, memory, time.perf_counter() - start)
    return 0


def report(args, timing, memory, elapsed) -> None:
    from resure.io import atomic_write_json

    t = timing["median_s"]
    mib = {m: memory[m]["peak_bytes"] / 2**20 for m in METHODS}
    added = {m: (memory[m]["peak_bytes"] - memory[m]["before_bytes"]) / 2**20 for m in METHODS}
    time_ratio, mem_ratio = t["resure"] / t["uniform"], mib["resure"] / mib["uniform"]
    print(f"model {args.model} ({'full' if args.full else 'LoRA'}), batch {args.batch_size} x "
          f"<= {args.max_length} tokens (mean {timing['tokens_per_batch']:.0f} real tokens), "
          f"{args.steps} timed steps per method, {args.threads} threads")
    print(f"{'method':<10}{'median step s':>15}{'peak MiB':>12}{'added MiB':>12}")
    for m in METHODS:
        print(f"{m:<10}{t[m]:>15.4f}{mib[m]:>12.1f}{added[m]:>12.1f}")
    print(f"time ratio resure/uniform:   {time_ratio:.4f}  (goal <= 1.02; difference of "
          f"medians {1000 * (t['resure'] - t['uniform']):+.1f} ms per step)")
    print(f"memory ratio resure/uniform: {mem_ratio:.4f}  "
          f"(goal <= 1.05; {memory['uniform']['kind']})")
    print(f"resure down-weighted {timing['resure_frac_downweighted']:.1%} of turns; "
          f"bench took {elapsed:.0f} s")
    if args.json:
        figures = {"time": timing, "memory": memory, "time_ratio": time_ratio,
                   "memory_ratio": mem_ratio, "args": {k: str(v) for k, v in vars(args).items()}}
        atomic_write_json(args.json, figures)


if __name__ == "__main__":
    sys.exit(main())
