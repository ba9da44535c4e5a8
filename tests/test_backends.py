"""Turn scheduling, the hf backend on tiny models, generate_answers and `resure generate`."""

from __future__ import annotations

import json

import pytest
import torch

from resure.eval.backends import GenerationError, SamplingParams, TurnBackend, TurnFailure
from resure.eval.backends.base import plan_rounds, turn_messages
from resure.eval.backends.hf import HFBackend, default_model_id, stop_token_ids
from resure.eval.generate import generate_answers, manifest_path, select_items
from resure.eval.types import Answer, EvalItem
from resure.io import read_jsonl

GREEDY = SamplingParams(max_new_tokens=6, temperature=0.0)


def make_items() -> list[EvalItem]:
    return [
        EvalItem("s", "own-a", "c", turns=("Hello, how are you?", "What is the capital?"),
                 reference=("Fine.", "Paris."), history="own"),
        EvalItem("s", "gold-b", "c", turns=("Tell me a story.", "About a dragon?", "Why?"),
                 reference=("Once upon a time.", "Yes, a dragon.", "Because."),
                 history="golden"),
        EvalItem("s", "own-c", "c", turns=("Write a poem about the sea, the wind and stars.",),
                 history="own", system="You are a poet."),
    ]


# --- history and scheduling ----------------------------------------------------------------


def test_turn_messages_own_uses_answers_golden_uses_reference():
    own, gold, _ = make_items()
    assert turn_messages(own, 1, ["MY ANSWER", None]) == (
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "MY ANSWER"},
        {"role": "user", "content": "What is the capital?"},
    )
    assert [m["content"] for m in turn_messages(gold, 2, [None] * 3)] == [
        "Tell me a story.", "Once upon a time.", "About a dragon?", "Yes, a dragon.", "Why?"]


def test_turn_messages_system_and_order_checks():
    own, _, poet = make_items()
    assert turn_messages(poet, 0, [None])[0] == {"role": "system", "content": "You are a poet."}
    with pytest.raises(ValueError, match="turn 2 asked before turn 1 was answered"):
        turn_messages(own, 1, [None, None])


def test_plan_rounds_golden_all_at_once_own_one_per_round():
    assert plan_rounds(make_items()) == [
        [(0, 0), (1, 0), (1, 1), (1, 2), (2, 0)],
        [(0, 1)],
    ]


class EchoBackend(TurnBackend):
    """Answers ``<qid>/<turn>/<number of messages>``; fails the turns listed in ``fail``."""

    name = "echo"

    def __init__(self, fail=()):
        self.fail = set(fail)
        self.model_id = "echo-model"
        self.requests = []

    def identity(self):
        return {"backend": "echo", "model": "echo", "adapter": None, "chat_template_hash": None}

    def complete(self, requests, sampling, progress):
        self.requests.extend(requests)
        progress(len(requests))
        return [TurnFailure(r.question_id, r.turn + 1, "boom")
                if (r.question_id, r.turn + 1) in self.fail
                else f" {r.question_id}/{r.turn + 1}/{len(r.messages)} " for r in requests]


def test_turn_backend_threads_own_answers_into_later_prompts():
    backend = EchoBackend()
    answers = backend.generate(make_items(), GREEDY)
    assert [a.turns for a in answers] == [
        ("own-a/1/1", "own-a/2/3"), ("gold-b/1/1", "gold-b/2/3", "gold-b/3/5"), ("own-c/1/2",)]
    second = [r for r in backend.requests if r.question_id == "own-a" and r.turn == 1][0]
    assert second.messages[1] == {"role": "assistant", "content": "own-a/1/1"}
    assert answers[0].generation["history"] == "own"
    assert answers[0].generation["sampling"]["max_new_tokens"] == 6


def test_failed_turn_drops_the_item_and_error_keeps_the_rest():
    backend = EchoBackend(fail={("own-a", 1)})
    with pytest.raises(GenerationError, match="question 'own-a' turn 1: boom") as info:
        backend.generate(make_items(), GREEDY)
    assert [a.question_id for a in info.value.answers] == ["gold-b", "own-c"]
    assert not [r for r in backend.requests if r.question_id == "own-a" and r.turn == 1]


def test_item_temperature_used_unless_overridden():
    items = [EvalItem("s", 1, "c", turns=("hi",), temperature=0.7)]
    backend = EchoBackend()
    backend.generate(items, SamplingParams())
    backend.generate(items, SamplingParams(temperature=0.0))
    assert [r.temperature for r in backend.requests] == [0.7, 0.0]


# --- generate_answers -----------------------------------------------------------------------


def test_generate_answers_writes_fastchat_rows_and_manifest(tmp_path):
    out = tmp_path / "a" / "answers.jsonl"
    result = generate_answers("s", make_items(), EchoBackend(), GREEDY, out)
    rows = read_jsonl(out)
    assert [r["question_id"] for r in rows] == ["own-a", "gold-b", "own-c"]
    assert rows[0]["choices"] == [{"index": 0, "turns": ["own-a/1/1", "own-a/2/3"]}]
    assert rows[0]["model_id"] == "echo-model"
    assert Answer.from_fastchat(rows[1]) == result.answers[1]
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["answers"] == 3 and manifest["failures"] == []
    assert manifest["backend"]["backend"] == "echo"
    assert (result.reused, result.generated) == (0, 3)


def test_rerun_with_same_inputs_generates_nothing(tmp_path):
    out = tmp_path / "answers.jsonl"
    generate_answers("s", make_items(), EchoBackend(), GREEDY, out)
    backend = EchoBackend()
    result = generate_answers("s", make_items(), backend, GREEDY, out)
    assert backend.requests == [] and (result.reused, result.generated) == (3, 0)
    assert [a.turns for a in result.answers][0] == ("own-a/1/1", "own-a/2/3")


def test_changed_inputs_regenerate(tmp_path):
    out = tmp_path / "answers.jsonl"
    generate_answers("s", make_items(), EchoBackend(), GREEDY, out)
    backend = EchoBackend()
    generate_answers("s", make_items(), backend, SamplingParams(max_new_tokens=7), out)
    assert len(backend.requests) == 6


def test_failures_written_counted_and_retried_alone(tmp_path):
    out = tmp_path / "answers.jsonl"
    with pytest.raises(GenerationError):
        generate_answers("s", make_items(), EchoBackend(fail={("gold-b", 2)}), GREEDY, out)
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["failures"] == [{"question_id": "gold-b", "turn": 2, "error": "boom"}]
    assert [r["question_id"] for r in read_jsonl(out)] == ["own-a", "own-c"]
    retry = EchoBackend()
    result = generate_answers("s", make_items(), retry, GREEDY, out)
    assert {r.question_id for r in retry.requests} == {"gold-b"}
    assert [a.question_id for a in result.answers] == ["own-a", "gold-b", "own-c"]
    assert json.loads(manifest_path(out).read_text())["failures"] == []


def test_tolerated_failures_do_not_raise(tmp_path):
    result = generate_answers("s", make_items(), EchoBackend(fail={("own-c", 1)}), GREEDY,
                              tmp_path / "a.jsonl", max_failures=1)
    assert [f.question_id for f in result.failures] == ["own-c"]
    assert len(result.answers) == 2


def test_select_items_is_seeded_and_keeps_order():
    items = [EvalItem("s", k, "c", turns=("x",)) for k in range(20)]
    picked = select_items(items, 5, seed=3)
    assert [i.question_id for i in picked] == sorted(i.question_id for i in picked)
    assert picked == select_items(items, 5, seed=3) and len(picked) == 5
    assert select_items(items, None) == items


def test_duplicate_question_ids_refused(tmp_path):
    items = make_items() + [make_items()[0]]
    with pytest.raises(ValueError, match="'own-a' appears twice"):
        generate_answers("s", items, EchoBackend(), GREEDY, tmp_path / "a.jsonl")


# --- hf backend -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf(lively_model_dir):
    return HFBackend(lively_model_dir, batch_size=4)


@pytest.mark.parametrize(("family", "token"), [("chatml", "<|im_end|>"),
                                               ("llama3", "<|eot_id|>"),
                                               ("gemma", "<end_of_turn>")])
def test_stop_ids_hold_the_end_of_turn_token(tmp_path, family, token):
    from tiny import make_tokenizer

    tokenizer = make_tokenizer(family, tmp_path)
    assert tokenizer.convert_tokens_to_ids(token) in stop_token_ids(tokenizer)


def test_hf_prompts_follow_history_mode(hf, monkeypatch):
    prompts = {}
    original = HFBackend.prompt_text

    def record(self, request):
        text = original(self, request)
        prompts[(request.question_id, request.turn)] = text
        return text

    monkeypatch.setattr(HFBackend, "prompt_text", record)
    answers = {a.question_id: a for a in hf.generate(make_items(), GREEDY)}
    own_first = answers["own-a"].turns[0]
    assert own_first  # the lively model writes text
    expected = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                "<|im_start|>user\nHello, how are you?<|im_end|>\n"
                f"<|im_start|>assistant\n{own_first}<|im_end|>\n"
                "<|im_start|>user\nWhat is the capital?<|im_end|>\n<|im_start|>assistant\n")
    assert prompts[("own-a", 1)] == expected
    golden = prompts[("gold-b", 2)]
    assert "<|im_start|>assistant\nOnce upon a time.<|im_end|>" in golden
    assert "<|im_start|>assistant\nYes, a dragon.<|im_end|>" in golden
    assert answers["gold-b"].turns[0] not in golden or answers["gold-b"].turns[0] == ""
    assert prompts[("own-c", 0)].startswith("<|im_start|>system\nYou are a poet.<|im_end|>")


def test_hf_pads_on_the_left(hf, monkeypatch):
    seen = []
    original = hf.model.generate

    def spy(**kwargs):
        seen.append(kwargs["attention_mask"].clone())
        return original(**kwargs)

    monkeypatch.setattr(hf.model, "generate", spy)
    hf.generate(make_items(), GREEDY)
    mask = seen[0]  # round 0: five prompts of different lengths
    assert mask.shape[0] == 4 and bool((mask[:, -1] == 1).all())
    assert bool((mask[:, 0] == 0).any())  # shorter prompts padded at the start


def test_hf_batched_equals_one_at_a_time_greedy(hf, lively_model_dir):
    single = HFBackend(lively_model_dir, batch_size=1)
    items = make_items()
    batched = [a.turns for a in hf.generate(items, GREEDY)]
    alone = [a.turns for a in single.generate(items, GREEDY)]
    assert batched == alone
    assert any(t for turns in batched for t in turns)


def test_hf_sampling_is_seeded_and_leaves_global_rng_alone(hf):
    sampling = SamplingParams(max_new_tokens=6, temperature=1.0, seed=5)
    state = torch.get_rng_state()
    first = [a.turns for a in hf.generate(make_items(), sampling)]
    assert torch.equal(torch.get_rng_state(), state)
    again = [a.turns for a in hf.generate(make_items(), sampling)]
    other = [a.turns for a in hf.generate(make_items(), SamplingParams(
        max_new_tokens=6, temperature=1.0, seed=6))]
    assert first == again and first != other


def test_hf_prompt_too_long_fails_only_that_item(hf):
    items = make_items() + [EvalItem("s", "long", "c", turns=("dragon " * 900,))]
    with pytest.raises(GenerationError, match=r"question 'long' turn 1: prompt of \d+ tokens "
                                              r"plus max_new_tokens=6 exceeds the model's 1024"):
        hf.generate(items, GREEDY)


def test_hf_with_fresh_adapter_matches_base(hf, lively_model_dir, lively_adapter_dir):
    adapted = HFBackend(lively_model_dir, adapter=lively_adapter_dir, batch_size=4)
    assert adapted.identity()["adapter"] == str(lively_adapter_dir)
    assert adapted.model_id == f"{lively_model_dir.name}+{lively_adapter_dir.name}"
    # A fresh LoRA has zero B matrices: same greedy answers as the base model.
    assert ([a.turns for a in adapted.generate(make_items(), GREEDY)]
            == [a.turns for a in hf.generate(make_items(), GREEDY)])


@pytest.mark.parametrize(("adapter", "expected"), [
    (None, "smol"),
    ("/runs/r1/final", "smol+r1-final"),
    ("/runs/r2/final", "smol+r2-final"),
    ("/runs/r1/adapter", "smol+r1-adapter"),
    ("/runs/x/checkpoints/samples-1000", "smol+x-samples-1000"),
    ("/runs/x/checkpoints/checkpoint-50", "smol+x-checkpoint-50"),
    ("/runs/my-lora", "smol+my-lora"),
])
def test_default_model_id_tells_runs_apart(adapter, expected):
    assert default_model_id("/models/smol", adapter) == expected


def test_default_model_id_of_relative_adapter_reads_its_parents(tmp_path, monkeypatch):
    (tmp_path / "r7" / "final").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "r7")
    assert default_model_id("smollm2-135m-instruct", "final") == "smollm2-135m-instruct+r7-final"


def test_hf_counts_generated_tokens(lively_model_dir):
    backend = HFBackend(lively_model_dir, batch_size=8)
    backend.generate(make_items(), GREEDY)
    assert 0 < backend.generated_tokens <= 6 * 6


# --- CLI ------------------------------------------------------------------------------------


def test_cli_generate_prints_answers_path(tmp_path, shared_data, lively_model_dir, capsys):
    from resure.cli import main

    out = tmp_path / "answers.jsonl"
    argv = ["generate", "--suite", "mt_bench_101", "--data-dir",
            str(shared_data / "mt_bench_101"), "--suite-option", "limit_per_task=1",
            "--limit", "3", "--model", str(lively_model_dir), "--max-new-tokens", "4",
            "--output", str(out), "--max-failures", "3"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)
    manifest = json.loads(manifest_path(out).read_text())
    assert len(read_jsonl(out)) + len(manifest["failures"]) == manifest["items"] == 3
    assert manifest["backend"]["chat_template_hash"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--backend", "openai", "--adapter", "x"],
     "error: --adapter is not supported with --backend openai"),
    (["--base-url", "http://x"], "error: --base-url is only used with --backend openai"),
    (["--suite-option", "limit_per_task=2"],
     "error: suite 'mt_eval_followup' has no option 'limit_per_task'"),
    (["--suite-option", "limit_per_task"], "error: --suite-option 'limit_per_task': expected"),
    (["--limit", "0"], "error: --limit must be >= 1, got 0"),
])
def test_cli_usage_errors_exit_2(capsys, extra, message):
    from resure.cli import main

    assert main(["generate", "--suite", "mt_eval_followup", "--model", "m", *extra]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_cli_unknown_suite_exits_2_and_missing_files_1(tmp_path, capsys):
    from resure.cli import main

    assert main(["generate", "--suite", "mt_bench_10", "--model", "m"]) == 2
    assert "unknown suite 'mt_bench_10'; did you mean 'mt_bench_101'?" in capsys.readouterr().err
    assert main(["generate", "--suite", "mt_bench_101", "--data-dir", str(tmp_path),
                 "--model", "m"]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_cli_default_output_tells_adapters_of_two_runs_apart(
        tmp_path, shared_data, lively_model_dir, lively_adapter_dir, monkeypatch, capsys):
    import shutil

    from resure.cli import main

    monkeypatch.chdir(tmp_path)
    paths = []
    for run in ("r1", "r2"):
        adapter = shutil.copytree(lively_adapter_dir, tmp_path / "runs" / run / "final")
        assert main(["generate", "--suite", "mt_bench_101", "--data-dir",
                     str(shared_data / "mt_bench_101"), "--suite-option", "limit_per_task=1",
                     "--limit", "1", "--model", str(lively_model_dir), "--adapter",
                     str(adapter), "--max-new-tokens", "2", "--max-failures", "1"]) == 0
        paths.append(capsys.readouterr().out.strip())
    model = lively_model_dir.name
    assert paths == [f"answers/mt_bench_101/{model}+{run}-final.jsonl" for run in ("r1", "r2")]


@pytest.mark.integration
def test_hf_smollm2_answers_mt_bench_101(smollm2_dir, shared_data):
    from resure.eval.suites import get_suite

    items = get_suite("mt_bench_101", limit_per_task=1).load(shared_data / "mt_bench_101")[:3]
    answers = HFBackend(smollm2_dir, batch_size=8).generate(
        items, SamplingParams(max_new_tokens=16))
    assert [len(a.turns) for a in answers] == [len(i.turns) for i in items]
    assert all(turn.strip() for a in answers for turn in a.turns)
