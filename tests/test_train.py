"""Training on the tiny model: collator, weighted loss, logs, checkpoints and reruns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import TrainerCallback, TrainingArguments

from resure.conversation import Conversation, Message
from resure.tokenize import encode_many
from resure.train import TrainConfig, train
from resure.train.data import DialogueCollator, DialogueDataset
from resure.train.trainer import (
    WeightedTrainer,
    tensors_from_json,
    tensors_to_json,
)
from resure.weighting import TurnBatch, WeightingMethod, get_weighting, register_weighting

ANSWERS = (
    "I am fine, thank you very much.",
    "Sure, what subject is it about?",
    "The capital of France is Paris, the capital of France.",
)
CORRUPT_EVERY = 4


def make_convs(n: int) -> list[Conversation]:
    """Three-turn dialogues; every 4th has a corrupted second answer (and the third answer
    is then context-corrupted)."""
    convs = []
    for i in range(n):
        bad = i % CORRUPT_EVERY == 0
        convs.append(
            Conversation(
                id=f"c{i}",
                messages=(
                    Message("user", "Hello, how are you doing today?"),
                    Message("assistant", ANSWERS[i % 3] * (1 + i % 2)),
                    Message("user", "Tell me a story about a dragon."),
                    Message(
                        "assistant",
                        "Sorry, I cannot help." if bad else "The quick brown fox jumps.",
                        meta={"corruption": "swap"} if bad else {},
                    ),
                    Message("user", "Write a poem about the sea."),
                    Message(
                        "assistant",
                        "The wind, the moon and the stars above.",
                        meta={"context_corrupted": True} if bad else {},
                    ),
                ),
            )
        )
    return convs


@register_weighting("test_halve_second_turn")
class HalveSecondTurn(WeightingMethod):
    """Weight 0.5 on turn 1, 0 on turn 2 and beyond, 1 on turn 0 (stateless)."""

    def weights(self, batch: TurnBatch) -> torch.Tensor:
        w = torch.zeros_like(batch.losses)
        w[:, 0] = 1.0
        if w.shape[1] > 1:
            w[:, 1] = 0.5
        return torch.where(batch.present, w, torch.zeros_like(w))


class _Negative(WeightingMethod):
    name = "negative"

    def weights(self, batch):
        return -batch.present.float()


def tiny_config(model_dir, out, **overrides) -> TrainConfig:
    options = dict(
        model=str(model_dir),
        output_dir=str(out),
        batch_size=2,
        lr=1e-2,
        logging_steps=1,
        progress=False,
        num_threads=1,
    )
    options.update(overrides)
    return TrainConfig(**options)


def adapter_tensors(directory) -> dict[str, torch.Tensor]:
    return load_file(str(Path(directory) / "adapter_model.safetensors"))


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_batch(tiny_model_dir):
    from resure.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    dataset = DialogueDataset(encode_many(make_convs(3), tokenizer).encoded)
    collate = DialogueCollator(tokenizer.pad_token_id)
    return dataset, collate([dataset[i] for i in range(3)]), tokenizer.pad_token_id


def _trainer(model_dir, tmp_path, method, normalize="tokens", sample_ids=("a", "b", "c")):
    from resure.models import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(model_dir)
    args = TrainingArguments(
        output_dir=str(tmp_path), remove_unused_columns=False, report_to=[], use_cpu=True
    )
    trainer = WeightedTrainer(
        model=model, args=args, method=method, sample_ids=sample_ids, normalize=normalize
    )
    return trainer, model


# ----------------------------------------------------------------- collator


def test_collator_pads_every_key(tiny_batch):
    dataset, batch, pad_id = tiny_batch
    lengths = [len(e) for e in dataset.encoded]
    b, s = 3, max(lengths)
    assert set(batch) == {
        "input_ids", "attention_mask", "labels", "turn_index", "sample_idx", "corrupted",
        "context_corrupted",
    }
    for key in ("input_ids", "attention_mask", "labels", "turn_index"):
        assert batch[key].shape == (b, s)
    assert lengths[0] != lengths[1]  # padding happens
    for i, n in enumerate(lengths):
        e = dataset.encoded[i]
        assert batch["input_ids"][i, :n].tolist() == e.input_ids
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (s - n)
        assert batch["labels"][i, n:].eq(-100).all()
        assert batch["turn_index"][i, n:].eq(-1).all()
        assert batch["input_ids"][i, n:].eq(pad_id).all()
    assert batch["sample_idx"].tolist() == [0, 1, 2]
    assert batch["corrupted"].dtype == torch.bool
    assert batch["corrupted"].tolist() == [[False, True, False], [False] * 3, [False] * 3]
    assert batch["context_corrupted"].tolist() == [[False, False, True], [False] * 3, [False] * 3]


def test_collator_pads_turn_labels_to_the_longest_dialogue():
    items = [
        {"input_ids": [5, 6], "labels": [-100, 6], "turn_index": [-1, 0], "sample_idx": 0,
         "corrupted": [True], "context_corrupted": [False]},
        {"input_ids": [5, 6, 7, 8], "labels": [-100, 6, -100, 8], "turn_index": [-1, 0, -1, 1],
         "sample_idx": 1, "corrupted": [False, False], "context_corrupted": [False, True]},
    ]
    batch = DialogueCollator(pad_token_id=9)(items)
    assert batch["input_ids"].tolist() == [[5, 6, 9, 9], [5, 6, 7, 8]]
    assert batch["corrupted"].tolist() == [[True, False], [False, False]]
    assert batch["context_corrupted"].tolist() == [[False, False], [False, True]]


# ----------------------------------------------------------------- compute_loss


def test_uniform_loss_equals_the_models_own_loss(tiny_model_dir, tiny_batch, tmp_path):
    _, batch, _ = tiny_batch
    trainer, model = _trainer(tiny_model_dir, tmp_path, get_weighting("uniform"))
    loss = trainer.compute_loss(model, batch)
    reference = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
        labels=batch["labels"],
    ).loss
    torch.testing.assert_close(loss, reference)


def _reference_weighted_loss(model, batch, turn_weights, normalize):
    """Per-token F.cross_entropy weighted by the weight of each token's turn."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    num, tokens, weighted_tokens = 0.0, 0.0, 0.0
    for b in range(logits.shape[0]):
        for t in range(logits.shape[1] - 1):
            label = int(batch["labels"][b, t + 1])
            if label == -100:
                continue
            w = turn_weights[int(batch["turn_index"][b, t + 1])]
            num = num + w * F.cross_entropy(logits[b, t], torch.tensor(label))
            tokens += 1
            weighted_tokens += w
    return num / (tokens if normalize == "tokens" else weighted_tokens)


def _reference_turn_means(model, batch) -> dict[tuple[int, int], float]:
    """``{(sample, turn): mean token loss}`` by F.cross_entropy on each turn's tokens."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    means = {}
    for b in range(logits.shape[0]):
        turn = batch["turn_index"][b, 1:]  # the turn of the label each logit predicts
        for k in turn[turn >= 0].unique().tolist():
            mask = turn == k
            target = batch["labels"][b, 1:][mask]
            means[(b, k)] = float(F.cross_entropy(logits[b, :-1][mask], target))
    return means


@pytest.mark.parametrize("normalize", ["tokens", "weighted_tokens"])
def test_weights_scale_each_turns_loss(tiny_model_dir, tiny_batch, tmp_path, normalize):
    _, batch, _ = tiny_batch
    method = get_weighting("test_halve_second_turn")
    trainer, model = _trainer(tiny_model_dir, tmp_path, method, normalize=normalize)
    loss = trainer.compute_loss(model, batch)
    reference = _reference_weighted_loss(model, batch, {0: 1.0, 1: 0.5, 2: 0.0}, normalize)
    torch.testing.assert_close(loss, reference)
    # the diagnostics saw 9 turns, 6 of them below weight 1 (turns 1 and 2 of each sample)
    summary = trainer.weight_diagnostics.summary()
    assert summary["turns"] == 9
    assert summary["frac_downweighted"] == pytest.approx(6 / 9)
    assert summary["mean_weight"] == pytest.approx(1.5 / 3)
    assert summary["corrupted"]["seen"] == summary["corrupted"]["down_weighted"] == 1
    assert summary["context_corrupted"]["seen"] == 1
    by_position = summary["by_position"]
    assert {k: row["mean_weight"] for k, row in by_position.items()} == {
        "0": 1.0, "1": 0.5, "2": 0.0}
    assert [row["seen"] for row in by_position.values()] == [3, 3, 3]
    assert [row["down_weighted"] for row in by_position.values()] == [0, 3, 3]
    plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  labels=batch["labels"]).loss
    assert summary["unweighted_loss"] == pytest.approx(float(plain.detach()), rel=1e-5)
    turn_means = _reference_turn_means(model, batch)
    assert summary["corrupted"]["mean_loss"] == pytest.approx(turn_means[(0, 1)], rel=1e-5)
    assert summary["context_corrupted"]["mean_loss"] == pytest.approx(turn_means[(0, 2)], rel=1e-5)
    clean = [v for k, v in turn_means.items() if k != (0, 1)]
    assert summary["clean"]["mean_loss"] == pytest.approx(sum(clean) / len(clean), rel=1e-5)
    assert trainer.samples_seen == 3


def test_weights_breaking_the_contract_are_refused(tiny_model_dir, tiny_batch, tmp_path):
    _, batch, _ = tiny_batch
    trainer, model = _trainer(tiny_model_dir, tmp_path, _Negative())
    with pytest.raises(ValueError, match="'negative' returned negative weights"):
        trainer.compute_loss(model, batch)


def test_trainer_needs_unused_columns_kept(tiny_model_dir, tmp_path):
    from resure.models import load_model_and_tokenizer

    model, _ = load_model_and_tokenizer(tiny_model_dir)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        WeightedTrainer(model=model, args=args, method=get_weighting("uniform"), sample_ids=())


def test_tensor_state_round_trips_through_json():
    state = {"a": torch.tensor([1.5, 2.25], dtype=torch.float64), "b": [torch.tensor([3])], "c": 1}
    back = tensors_from_json(json.loads(json.dumps(tensors_to_json(state))))
    assert back["a"].dtype == torch.float64 and back["a"].tolist() == [1.5, 2.25]
    assert back["b"][0].tolist() == [3] and back["c"] == 1


# ----------------------------------------------------------------- train()


def test_gradient_accumulation_matches_one_large_batch(tiny_model_dir, tmp_path):
    common = dict(max_steps=1, lora_dropout=0.0, shuffle=False, method="uniform")
    convs = make_convs(4)
    big = train(tiny_config(tiny_model_dir, tmp_path / "big", batch_size=4, **common), convs)
    small = train(
        tiny_config(tiny_model_dir, tmp_path / "acc", batch_size=2, grad_accum=2, **common),
        convs,
    )
    a, b = adapter_tensors(big.model_dir), adapter_tensors(small.model_dir)
    assert a.keys() == b.keys()
    initial_b = [k for k in a if "lora_B" in k]
    assert any(a[k].abs().sum() > 0 for k in initial_b)  # the step changed something
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_weighting_log_lines(tiny_model_dir, tmp_path):
    n = 8
    config = tiny_config(tiny_model_dir, tmp_path / "run", method="test_halve_second_turn",
                         shuffle=False)
    result = train(config, make_convs(n))
    rows = read_log(result.weighting_log)
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and result.steps == 4
    assert [r["samples_seen"] for r in rows] == [2, 4, 6, 8]
    for r in rows:
        assert r["turns"] == 6
        assert r["mean_weight"] == pytest.approx(0.5)
        assert r["frac_downweighted"] == pytest.approx(2 / 3)
        assert r["loss"] > 0 and r["learning_rate"] > 0
    corrupted = n // CORRUPT_EVERY
    total = {g: {k: sum(r[g][k] for r in rows) for k in ("seen", "down_weighted")}
             for g in ("corrupted", "clean", "context_corrupted")}
    assert total["corrupted"] == {"seen": corrupted, "down_weighted": corrupted}
    assert total["clean"] == {"seen": 3 * n - corrupted, "down_weighted": 2 * n - corrupted}
    assert total["context_corrupted"] == {"seen": corrupted, "down_weighted": corrupted}

    manifest = json.loads((Path(result.output_dir) / "train_config.json").read_text())
    assert manifest["method"]["name"] == "test_halve_second_turn"
    assert manifest["data"] == {"conversations": n, "encoded": n,
                                "skipped": {"load": 0, "encode": 0}}
    assert manifest["versions"]["torch"] == torch.__version__


def test_resure_log_has_per_position_statistics(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, tmp_path / "run", method="resure",
                         method_options={"warmup": 2, "max_positions": 4})
    rows = read_log(train(config, make_convs(6)).weighting_log)
    last = rows[-1]["positions"]
    assert sorted(last) == ["0", "1", "2", "3"]
    assert last["0"]["count"] == 6 and last["3"]["count"] == 0
    assert last["0"]["std"] > 0 and last["3"]["mean"] is None


class _Interrupt(TrainerCallback):
    """Stops the process (by an exception) before step ``at + 1`` begins."""

    def __init__(self, at: int):
        self.at = at

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt(f"interrupted after step {self.at}")


class _StepRecorder(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_resumed_run_matches_an_uninterrupted_one(tiny_model_dir, tmp_path):
    convs = make_convs(12)
    options = dict(
        method="resure",
        method_options={"warmup": 2, "threshold": 0.5, "one_sided": False},
        lora_dropout=0.1,  # consumes random numbers: the RNG state must be restored too
        checkpoint_steps=2,
    )
    whole = train(tiny_config(tiny_model_dir, tmp_path / "whole", **options), convs)

    cut = tiny_config(tiny_model_dir, tmp_path / "cut", **options)
    with pytest.raises(KeyboardInterrupt):
        train(cut, convs, callbacks=[_Interrupt(at=3)])
    assert not (tmp_path / "cut" / "final").exists()
    assert [r["step"] for r in read_log(tmp_path / "cut" / "weighting_log.jsonl")] == [1, 2, 3]
    recorder = _StepRecorder()
    resumed = train(cut, convs, callbacks=[recorder])
    assert recorder.steps == [3, 4, 5, 6]  # resumed from checkpoint-2, not from scratch

    assert resumed.steps == whole.steps == 6
    rows_whole, rows_resumed = read_log(whole.weighting_log), read_log(resumed.weighting_log)
    assert [r["step"] for r in rows_resumed] == [1, 2, 3, 4, 5, 6]
    assert any(r["frac_downweighted"] > 0 for r in rows_whole)  # weighting was active
    assert rows_resumed == rows_whole
    a, b = adapter_tensors(whole.model_dir), adapter_tensors(resumed.model_dir)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-7)
    state_whole = json.loads((Path(whole.model_dir) / "weighting_state.json").read_text())
    state_resumed = json.loads((Path(resumed.model_dir) / "weighting_state.json").read_text())
    assert state_resumed["samples_seen"] == state_whole["samples_seen"] == 12
    stats_a, stats_b = state_whole["method_state"]["stats"], state_resumed["method_state"]["stats"]
    assert stats_a["count"] == stats_b["count"]
    assert stats_b["mean"] == pytest.approx(stats_a["mean"], rel=1e-6)
    assert not (tmp_path / "cut" / "trainer").exists()  # resumable checkpoints cleaned up


def test_resume_needs_the_weighting_state(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, tmp_path / "run", checkpoint_steps=1)
    with pytest.raises(KeyboardInterrupt):
        train(config, make_convs(4), callbacks=[_Interrupt(at=1)])
    (tmp_path / "run" / "trainer" / "checkpoint-1" / "weighting_state.json").unlink()
    with pytest.raises(FileNotFoundError, match="weighting state cannot be restored"):
        train(config, make_convs(4))


def test_save_at_samples_equals_training_on_the_first_n(tiny_model_dir, tmp_path):
    convs = make_convs(8)
    options = dict(method="resure", method_options={"warmup": 2}, lr_scheduler="constant")
    full = train(tiny_config(tiny_model_dir, tmp_path / "full", save_at_samples=[4, 8],
                             **options), convs)
    assert sorted(full.snapshots) == [4, 8]
    snap = Path(full.snapshots[4])
    assert snap == tmp_path / "full" / "checkpoints" / "samples-4"
    info = json.loads((snap / "snapshot.json").read_text())
    assert info == {"samples": 4, "samples_seen": 4, "step": 2}
    assert (snap / "adapter_config.json").is_file() and (snap / "tokenizer_config.json").is_file()
    assert json.loads((snap / "weighting_state.json").read_text())["samples_seen"] == 4

    # without save_at_samples the order must be kept explicitly
    first4 = tiny_config(tiny_model_dir, tmp_path / "first4", num_samples=4, shuffle=False,
                         **options)
    first4 = train(first4, convs)
    a, b = adapter_tensors(snap), adapter_tensors(first4.model_dir)
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    # samples-8 is the end of the pass: the same weights as final/
    for k, v in adapter_tensors(full.snapshots[8]).items():
        torch.testing.assert_close(v, adapter_tensors(full.model_dir)[k])


def test_save_at_samples_beyond_the_data_is_refused(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, tmp_path / "run", save_at_samples=[8])
    with pytest.raises(ValueError, match="exceeds the 6 trainable conversations"):
        train(config, make_convs(6))


def test_rerun_of_a_finished_run_costs_nothing(tiny_model_dir, tmp_path, monkeypatch):
    config = tiny_config(tiny_model_dir, tmp_path / "run")
    first = train(config, make_convs(4))
    assert not first.reused

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(WeightedTrainer, "train", no_training)
    again = train(config, make_convs(4))
    assert again.reused and again.model_dir == first.model_dir and again.steps == first.steps

    with pytest.raises(ValueError, match="holds a finished run of another config or data"):
        train(tiny_config(tiny_model_dir, tmp_path / "run", lr=1e-3), make_convs(4))
    with pytest.raises(ValueError, match="holds a finished run of another config or data"):
        train(config, make_convs(5))


def test_full_finetune_saves_a_whole_model(tiny_model_dir, tmp_path):
    result = train(tiny_config(tiny_model_dir, tmp_path / "run", full_finetune=True,
                               max_steps=1), make_convs(2))
    assert not result.is_adapter
    assert (Path(result.model_dir) / "config.json").is_file()
    assert (Path(result.model_dir) / "model.safetensors").is_file()


def test_skip_policy_lists_unencodable_dialogues(tiny_model_dir, tmp_path):
    from resure.tokenize import TruncationError

    convs = make_convs(4)
    long = Conversation(id="long", messages=(Message("user", "Hello " * 150),
                                             Message("assistant", "Paris.")))
    config = tiny_config(tiny_model_dir, tmp_path / "run", max_length=200, policy="skip")
    result = train(config, [*convs, long])
    assert result.skipped == {"load": 0, "encode": 1} and result.num_samples == 4
    rows = [json.loads(x) for x in (tmp_path / "run" / "skipped.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["record_id"]) for r in rows] == [("encode", "long")]
    with pytest.raises(TruncationError, match="long"):
        train(tiny_config(tiny_model_dir, tmp_path / "err", max_length=200), [*convs, long])


def test_invalid_source_records_are_listed_under_skip(tiny_model_dir, tmp_path):
    from resure.data import DataError, save_conversations

    no_answer = Conversation(id="mute", messages=(Message("user", "Hello?"),))
    data = tmp_path / "data.jsonl"
    save_conversations(data, [*make_convs(2), no_answer])
    config = tiny_config(tiny_model_dir, tmp_path / "run", data=str(data), policy="skip")
    result = train(config)
    assert result.skipped == {"load": 1, "encode": 0} and result.num_samples == 2
    row = json.loads((tmp_path / "run" / "skipped.jsonl").read_text())
    assert (row["stage"], row["record_id"], row["rule"]) == ("load", "mute", "has-assistant")
    with pytest.raises(DataError, match="mute"):
        train(tiny_config(tiny_model_dir, tmp_path / "err", data=str(data)))


def test_data_given_twice_or_not_at_all(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        train(tiny_config(tiny_model_dir, tmp_path, data="chitchat:train"), make_convs(2))
    with pytest.raises(ValueError, match="not neither"):
        train(tiny_config(tiny_model_dir, tmp_path))


def test_num_samples_beyond_the_data(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="num_samples=10 but the data holds only 4"):
        train(tiny_config(tiny_model_dir, tmp_path, num_samples=10), make_convs(4))


# ----------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"save_at_samples": [4, 6]}, r"save_at_samples \[6\] must be positive multiples of "
                                      r"the effective batch size 4"),
        ({"save_at_samples": [8], "shuffle": True}, "shuffle=True breaks"),
        ({"save_at_samples": [8], "epochs": 2}, "set epochs=1"),
        ({"save_at_samples": [8], "num_samples": 4}, "exceeds num_samples 4"),
        ({"full_finetune": True, "lora_r": 16}, "lora_r only apply to LoRA"),
        ({"max_steps": 5, "epochs": 3}, "set only one of them"),
        ({"policy": "ignore"}, "policy must be one of"),
        ({"lr_scheduler": "step"}, "lr_scheduler must be one of"),
        ({"normalize": "turns"}, "normalize must be one of"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"num_samples": 0}, "num_samples must be >= 1"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"method_options": ["threshold"]}, "method_options must be a dict"),
        ({"lora_dropout": 1.0}, r"lora_dropout must be in \[0, 1\)"),
    ],
)
def test_config_refuses_clashing_options(overrides, message):
    options = {"model": "m", "output_dir": "o", "batch_size": 2, "grad_accum": 2, **overrides}
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_config_resolves_shuffle_and_fingerprint():
    base = TrainConfig(model="m", output_dir="a")
    assert base.shuffle_data
    assert not TrainConfig(model="m", output_dir="a", save_at_samples=[4]).shuffle_data
    # paths and thread counts do not change what is trained
    same = TrainConfig(model="m", output_dir="b", num_threads=2, cache_dir="c")
    assert same.fingerprint() == base.fingerprint()
    assert TrainConfig(model="m", output_dir="a", seed=1).fingerprint() != base.fingerprint()
    assert TrainConfig.from_dict(base.to_dict()) == base
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({**base.to_dict(), "epoch": 2})
