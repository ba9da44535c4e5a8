"""The ``llm`` judge: an OpenAI-compatible chat model grades every turn from 1 to 10.

MT-Bench items are graded as FastChat's llm_judge does in single-answer mode: turn 1 with
``single-v1`` (``single-math-v1`` with the GPT-4 reference for math, reasoning and coding),
turn 2 with the matching ``-multi-turn`` template, the template's system prompt,
temperature 0 and at most 2048 new tokens. Other suites get the generic per-turn prompt of
:mod:`resure.eval.judges.prompts` with the item's rubric and reference.

Requests go through the official ``openai`` client, whose own ``timeout`` and
``max_retries`` handle slow servers, rate limits (honouring ``Retry-After``) and server
errors; this module adds no retry loop. A reply that never arrives, arrives empty or holds
no trustworthy rating becomes a :class:`~resure.eval.types.Judgment` with ``score=None``,
a ``failure`` reason and the raw text: it is never dropped and never given a number.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resure.eval.cache import CachedReply, JudgmentCache, cache_key
from resure.eval.judges.base import JUDGES, Judge
from resure.eval.judges.parse import parse_rating
from resure.eval.judges.prompts import RenderedPrompt, render_generic, render_mt_bench
from resure.eval.openai_client import openai_client
from resure.eval.types import Answer, EvalItem, Judgment

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class TurnRequest:
    """One judged turn: what is asked, about which answer."""

    item: EvalItem
    answer: Answer
    turn: int
    prompt: RenderedPrompt


@dataclass(frozen=True)
class Reply:
    """The outcome of one request: text, or a failure reason with its detail."""

    content: str | None
    failure: str | None = None
    detail: str | None = None
    cached: bool = False
    finish_reason: str | None = None


@dataclass
class _Outcome:
    """Per-repeat scores and failures of one judged turn, gathered before summarising."""

    scores: list[float] = field(default_factory=list)
    failures: list[tuple[str, str | None]] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)
    cached: list[bool] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)


@JUDGES.register("llm")
class LLMJudge(Judge):
    """Grade turns with a chat model behind an OpenAI-compatible endpoint.

    Args:
        model: the judge model's name on the server (e.g. ``"gpt-4"``).
        base_url: endpoint root, e.g. ``"http://127.0.0.1:8000/v1"``; None for OpenAI's.
        api_key_env: environment variable holding the API key.
        concurrency: requests in flight at once.
        timeout: seconds per request attempt (the client's ``timeout``).
        max_retries: the client's retries on 408/409/429/5xx, timeouts and lost
            connections, with its backoff and ``Retry-After`` handling.
        repeats: requests per turn; the score is their median, all kept in
            ``Judgment.scores`` with the range in ``meta["spread"]``.
        cache: a :class:`JudgmentCache` or the path of one; None disables caching.
        temperature, max_tokens: sampling of the judge (FastChat: 0 and 2048).

    Notes:
        With ``temperature=0`` repeats only measure the server's nondeterminism. A turn
        whose repeats partly fail is scored from the repeats that succeeded and lists the
        failed ones in ``meta["failed_repeats"]``.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 3,
        repeats: int = 1,
        cache: JudgmentCache | str | Path | None = None,
        temperature: float = 0.0,
        max_tokens: int = 2048,
    ):
        _check_options(concurrency, timeout, max_retries, repeats, temperature, max_tokens)
        import openai  # deferred: keeps `resure --help` fast

        self.model = model
        self.base_url = base_url
        self.concurrency = concurrency
        self.repeats = repeats
        self.sampling = {"temperature": temperature, "max_tokens": max_tokens}
        self._client = openai_client(base_url, api_key_env, timeout, max_retries)
        self._openai = openai
        self.cache = JudgmentCache(cache) if isinstance(cache, str | Path) else cache

    def identity(self) -> dict[str, Any]:
        return {
            "judge": self.name,
            "model": self.model,
            "base_url": self.base_url,
            "repeats": self.repeats,
            **self.sampling,
        }

    def judge(
        self, items: Sequence[EvalItem], answers: Sequence[Answer] | None
    ) -> list[Judgment]:
        """One judgment per (answer, judged turn), in answer order then turn order."""
        if answers is None:
            raise ValueError("the llm judge grades answers: pass the model-answer file")
        plan = plan_requests(items, answers, judge=self.model)
        replies = self._replies([p for p in plan if isinstance(p, TurnRequest)])
        return [
            p if isinstance(p, Judgment) else self._judgment(p, replies) for p in plan
        ]

    # -- requests -------------------------------------------------------------------------

    def _key(self, prompt: RenderedPrompt, repeat: int) -> str:
        return cache_key(
            base_url=self.base_url,
            model=self.model,
            system=prompt.system,
            user=prompt.user,
            sampling=self.sampling,
            repeat=repeat,
        )

    def _replies(self, requests: list[TurnRequest]) -> dict[str, Reply]:
        """Replies by cache key for every repeat of every request; one call per key."""
        todo: dict[str, RenderedPrompt] = {}
        replies: dict[str, Reply] = {}
        for req in requests:
            for r in range(self.repeats):
                key = self._key(req.prompt, r)
                if key in replies or key in todo:
                    continue
                hit = self.cache.get(key) if self.cache is not None else None
                if hit is not None:
                    replies[key] = Reply(hit.content, cached=True, finish_reason=hit.finish_reason)
                else:
                    todo[key] = req.prompt
        logger.info(
            "llm judge %s: %d requests, %d from cache, %d to send (concurrency %d)",
            self.model, len(replies) + len(todo), len(replies), len(todo), self.concurrency,
        )
        if todo:
            replies.update(self._send_all(todo))
        return replies

    def _send_all(self, todo: dict[str, RenderedPrompt]) -> dict[str, Reply]:
        from tqdm.auto import tqdm

        out = {}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self._send, p): key for key, p in todo.items()}
            for fut in tqdm(as_completed(futures), total=len(futures), desc="judging",
                            disable=None):
                key = futures[fut]
                out[key] = reply = fut.result()
                if reply.failure is None and self.cache is not None:
                    self.cache.put(key, CachedReply(reply.content, self.model, reply.finish_reason))
        return out

    def _send(self, prompt: RenderedPrompt) -> Reply:
        """One chat completion; the client retries, failures come back as a reason."""
        oa = self._openai
        messages = [
            {"role": "system", "content": prompt.system},
            {"role": "user", "content": prompt.user},
        ]
        try:
            response = self._client.chat.completions.create(
                model=self.model, messages=messages, **self.sampling
            )
        # Subclasses before their bases: timeouts are connection errors, and rate-limit
        # and server errors are status errors, to the client.
        except oa.APITimeoutError as e:
            return Reply(None, "timeout", str(e))
        except oa.APIConnectionError as e:
            cause = f" ({e.__cause__})" if e.__cause__ else ""
            return Reply(None, "connection_error", f"{e}{cause}")
        except oa.RateLimitError as e:
            return Reply(None, "rate_limited", f"HTTP 429 after retries: {e.message}")
        except oa.InternalServerError as e:
            return Reply(None, "server_error", f"HTTP {e.status_code} after retries: {e.message}")
        except oa.APIStatusError as e:
            return Reply(None, "http_error", f"HTTP {e.status_code}: {e.message}")
        except (oa.APIResponseValidationError, ValueError) as e:
            # ValueError: a body announced as JSON that does not decode.
            return Reply(None, "bad_response", f"{type(e).__name__}: {e}")
        return _reply_text(response)

    # -- results --------------------------------------------------------------------------

    def _judgment(self, req: TurnRequest, replies: dict[str, Reply]) -> Judgment:
        outcome = _Outcome()
        for r in range(self.repeats):
            reply = replies[self._key(req.prompt, r)]
            outcome.texts.append(reply.content)
            outcome.cached.append(reply.cached)
            outcome.finish_reasons.append(reply.finish_reason)
            if reply.failure is not None:
                outcome.failures.append((reply.failure, reply.detail))
                continue
            parsed = parse_rating(reply.content, req.prompt.untrusted)
            if parsed.failure is not None:
                outcome.failures.append((parsed.failure, parsed.detail))
            else:
                outcome.scores.append(parsed.score)
        return self._summarise(req, outcome)

    def _summarise(self, req: TurnRequest, outcome: _Outcome) -> Judgment:
        meta: dict[str, Any] = {
            "template": req.prompt.template,
            "cached": all(outcome.cached),
            "suite": req.item.suite,
            "category": req.item.category,
            # "length" means the reply was cut at max_tokens, often before the rating.
            "finish_reason": outcome.finish_reasons[0],
        }
        failure = None
        score = None
        if outcome.scores:
            score = statistics.median(outcome.scores)
            if outcome.failures:
                meta["failed_repeats"] = [reason for reason, _ in outcome.failures]
        else:
            failure, meta["failure_detail"] = outcome.failures[0]
        if self.repeats > 1:
            meta["judgments"] = list(outcome.texts)
            if len(outcome.scores) > 1:
                meta["spread"] = max(outcome.scores) - min(outcome.scores)
        first_text = next((t for t in outcome.texts if t is not None), None)
        return Judgment(
            question_id=req.item.question_id,
            model=req.answer.model_id,
            judge=self.model,
            turn=req.turn,
            score=score,
            user_prompt=req.prompt.user,
            judgment=first_text if first_text is not None else "",
            failure=failure,
            scores=tuple(outcome.scores) if self.repeats > 1 else (),
            tstamp=time.time(),
            meta=meta,
        )


def _reply_text(response: Any) -> Reply:
    """The message text of a chat completion, or why there is none."""
    from openai.types.chat import ChatCompletion

    if not isinstance(response, ChatCompletion):
        # The client hands back the raw text when the body is not declared as JSON.
        return Reply(None, "bad_response", f"not a chat completion: {str(response)[:200]!r}")
    choices = response.choices or []
    content = choices[0].message.content if choices and choices[0].message else None
    finish = choices[0].finish_reason if choices else None
    if content is None or not content.strip():
        return Reply(None, "empty_content", f"no text in the reply (finish_reason={finish})")
    return Reply(content, finish_reason=finish)


def plan_requests(
    items: Sequence[EvalItem], answers: Sequence[Answer], judge: str
) -> list[TurnRequest | Judgment]:
    """A request per judged turn of each answer, or a failed judgment if the turn is missing.

    MT-Bench items grade both turns; other items grade ``meta["scored_turns"]`` (1-based)
    when given, else every turn.
    """
    by_id = {item.question_id: item for item in items}
    unknown = sorted({str(a.question_id) for a in answers if a.question_id not in by_id})
    if unknown:
        raise ValueError(
            f"answers to question ids the suite does not have: {', '.join(unknown[:10])}"
        )
    plan: list[TurnRequest | Judgment] = []
    for answer in answers:
        item = by_id[answer.question_id]
        for turn in _judged_turns(item):
            if turn > len(answer.turns):
                plan.append(_missing_turn(item, answer, turn, judge))
            else:
                plan.append(TurnRequest(item, answer, turn, _render(item, answer, turn)))
    return plan


def _judged_turns(item: EvalItem) -> list[int]:
    turns = item.meta.get("scored_turns") or range(1, len(item.turns) + 1)
    return [int(t) for t in turns]


def _render(item: EvalItem, answer: Answer, turn: int) -> RenderedPrompt:
    templates = item.meta.get("judge_prompts")
    if templates:
        return render_mt_bench(templates[turn - 1], item, answer, turn)
    return render_generic(item, answer, turn)


def _missing_turn(item: EvalItem, answer: Answer, turn: int, judge: str) -> Judgment:
    return Judgment(
        question_id=item.question_id,
        model=answer.model_id,
        judge=judge,
        turn=turn,
        score=None,
        failure="missing_turn",
        tstamp=time.time(),
        meta={
            "failure_detail": f"the answer has {len(answer.turns)} turn(s); turn {turn} is judged",
            "suite": item.suite,
            "category": item.category,
        },
    )


def _check_options(concurrency, timeout, max_retries, repeats, temperature, max_tokens) -> None:
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    if max_retries < 0:
        raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if temperature < 0:
        raise ValueError(f"temperature must be 0 or more, got {temperature}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
