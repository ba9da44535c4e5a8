"""Reference judges: real MiniLM similarity and tiny-model NLL against F.cross_entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from resure.eval.judges.base import JUDGES, get_judge
from resure.eval.judges.reference import (
    DEFAULT_MAX_BATCH_TOKENS,
    DEFAULT_MAX_LENGTH,
    ReferenceNLLJudge,
    golden_conversation,
    minilm_dir,
    similarity_score,
)
from resure.eval.types import Answer, EvalItem

ITEMS = [
    EvalItem("s", "q1", "c", turns=("How are you?", "What is the capital of France?"),
             reference=("I am fine, thank you very much.", "The capital of France is Paris."),
             history="golden"),
    EvalItem("s", "q2", "c", turns=("Tell me a story.",),
             reference=("Once upon a time a dragon learned to cook pasta at night.",),
             history="golden", system="You are a storyteller."),
]


@pytest.fixture(scope="module")
def similarity():
    return get_judge("reference_similarity")


def test_minilm_found_in_the_package():
    path = minilm_dir()
    assert path.name == "model" and (path / "model.safetensors").is_file()


def test_similar_answers_score_higher_than_unrelated(similarity):
    answers = [
        Answer("q1", "close", ("I'm doing fine, thanks a lot!", "Paris is France's capital.")),
        Answer("q2", "close", ("A dragon once learned to cook pasta late at night.",)),
    ]
    unrelated = [
        Answer("q1", "far", ("Stock markets fell sharply on Tuesday.", "Photosynthesis needs "
                                                                         "light.")),
        Answer("q2", "far", ("Install the package with pip and restart the kernel.",)),
    ]
    near = similarity.judge(ITEMS, answers)
    far = similarity.judge(ITEMS, unrelated)
    assert [(j.question_id, j.turn) for j in near] == [("q1", 1), ("q1", 2), ("q2", 1)]
    for a, b in zip(near, far, strict=True):
        assert a.score > b.score + 2
        assert 1.0 <= b.score <= a.score <= 10.0
        assert a.score == pytest.approx(similarity_score(a.meta["cosine"]))
    assert near[0].model == "close" and near[0].judge == "reference_similarity"


def test_identical_text_scores_ten(similarity):
    answer = Answer("q2", "m", ITEMS[1].reference)
    [judgment] = similarity.judge(ITEMS, [answer])
    assert judgment.meta["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert judgment.score == pytest.approx(10.0, abs=1e-4)


def test_similarity_scale():
    assert similarity_score(1.0) == 10.0
    assert similarity_score(0.5) == 5.5
    assert similarity_score(-0.3) == 1.0


def test_similarity_judges_scored_turns_only(similarity):
    item = EvalItem("s", "q3", "c", turns=("a", "b"), reference=("x", "y"),
                    meta={"scored_turns": [2]})
    judgments = similarity.judge([item], [Answer("q3", "m", ("x", "y"))])
    assert [j.turn for j in judgments] == [2]


def test_similarity_refuses_items_without_reference(similarity):
    item = EvalItem("mt_bench", 81, "writing", turns=("a", "b"))
    with pytest.raises(ValueError, match="item 81 of suite 'mt_bench' has no reference turns"):
        similarity.judge([item], [Answer(81, "m", ("x", "y"))])
    with pytest.raises(ValueError, match="answer of 'm' to 'q1' has 1 turns; the item has 2"):
        similarity.judge(ITEMS, [Answer("q1", "m", ("x",))])
    with pytest.raises(ValueError, match="unknown question 'zz'"):
        similarity.judge(ITEMS, [Answer("zz", "m", ("x",))])


# --- reference NLL --------------------------------------------------------------------------


def manual_turn_nll(model, tokenizer, item) -> list[float]:
    """Mean next-token cross-entropy over each assistant turn's labelled tokens, one
    dialogue at a time, with F.cross_entropy."""
    from resure.tokenize import encode_conversation

    enc = encode_conversation(golden_conversation(item), tokenizer)
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]  # [S, V]
    labels = torch.tensor(enc.labels)
    turn = torch.tensor(enc.turn_index)
    out = []
    for k in range(enc.num_turns):
        positions = ((turn == k) & (labels != -100)).nonzero().flatten()  # label positions
        loss = F.cross_entropy(logits[positions - 1], labels[positions], reduction="mean")
        out.append(float(loss))
    return out


def test_nll_equals_manual_cross_entropy(lively_model_dir):
    from resure.models import load_model_and_tokenizer

    judge = get_judge("reference_nll", model=lively_model_dir, batch_size=2)
    judgments = judge.judge(ITEMS, None)
    model, tokenizer = load_model_and_tokenizer(lively_model_dir)
    expected = [nll for item in ITEMS for nll in manual_turn_nll(model, tokenizer, item)]
    assert [(j.question_id, j.turn) for j in judgments] == [("q1", 1), ("q1", 2), ("q2", 1)]
    assert [j.score for j in judgments] == pytest.approx(expected, rel=1e-5)
    assert all(j.failure is None and j.meta["tokens"] > 0 for j in judgments)


def test_nll_batch_size_does_not_change_scores(lively_model_dir):
    one = get_judge("reference_nll", model=lively_model_dir, batch_size=1).judge(ITEMS, None)
    two = get_judge("reference_nll", model=lively_model_dir, batch_size=2).judge(ITEMS, None)
    assert [j.score for j in one] == pytest.approx([j.score for j in two], rel=1e-5)


def test_nll_with_fresh_adapter_equals_base(lively_model_dir, lively_adapter_dir):
    base = get_judge("reference_nll", model=lively_model_dir).judge(ITEMS, None)
    adapted = get_judge("reference_nll", model=lively_model_dir, adapter=lively_adapter_dir)
    judgments = adapted.judge(ITEMS, None)
    assert judgments[0].model == f"{lively_model_dir.name}+{lively_adapter_dir.name}"
    assert [j.score for j in judgments] == pytest.approx([j.score for j in base], rel=1e-5)


def test_nll_truncated_turns_fail_with_reason(lively_model_dir):
    from resure.tokenize import encode_conversation

    judge = get_judge("reference_nll", model=lively_model_dir)
    full = encode_conversation(golden_conversation(ITEMS[0]), judge.tokenizer)
    first_end = max(i for i, k in enumerate(full.turn_index) if k == 0) + 1
    judge.max_length = first_end + 2  # room for turn 1 only
    judgments = judge.judge(ITEMS[:1], None)
    assert judgments[0].score is not None
    assert judgments[1].score is None
    assert judgments[1].failure == f"reference turn 2 truncated at max_length={first_end + 2}"
    judge.max_length = 5  # not even turn 1 fits
    assert all(j.score is None and "max_length=5" in j.failure
               for j in judge.judge(ITEMS[:1], None))


def test_nll_class_attributes_and_registry():
    assert ReferenceNLLJudge.needs_answers is False
    assert ReferenceNLLJudge.higher_is_better is False
    assert {"reference_similarity", "reference_nll"} <= set(JUDGES.names())


def test_nll_refuses_items_without_reference(lively_model_dir):
    judge = get_judge("reference_nll", model=lively_model_dir)
    with pytest.raises(ValueError, match="reference_nll: item 7 .* has no reference turns"):
        judge.judge([EvalItem("mt_bench", 7, "c", turns=("a",))], None)


def test_nll_bounds_memory_by_default(lively_model_dir):
    judge = get_judge("reference_nll", model=lively_model_dir)
    assert judge.max_length == DEFAULT_MAX_LENGTH == 2048
    assert judge.max_batch_tokens == DEFAULT_MAX_BATCH_TOKENS


def test_nll_batches_by_length_under_a_token_budget(lively_model_dir):
    judge = get_judge("reference_nll", model=lively_model_dir, batch_size=3,
                      max_batch_tokens=100)
    # Longest first; 120 exceeds the budget alone; 50+40 pad to 2*50; 30, 20, 10 to 3*30.
    assert judge.batches([10, 50, 40, 30, 120, 20]) == [[4], [1, 2], [3, 5, 0]]


def test_nll_token_budget_does_not_change_scores(lively_model_dir, capsys):
    alone = get_judge("reference_nll", model=lively_model_dir, max_batch_tokens=1)
    together = get_judge("reference_nll", model=lively_model_dir, batch_size=2)
    assert [j.score for j in alone.judge(ITEMS, None)] == pytest.approx(
        [j.score for j in together.judge(ITEMS, None)], rel=1e-5)
    assert "2/2 [" in capsys.readouterr().err  # the progress bar: one batch per dialogue


def test_nll_refuses_non_positive_limits(lively_model_dir):
    with pytest.raises(ValueError, match="reference_nll: max_batch_tokens must be >= 1, got 0"):
        get_judge("reference_nll", model=lively_model_dir, max_batch_tokens=0)
