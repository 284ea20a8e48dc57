"""One generation request: its tokens, text, logprobs and the events it sends out.

The scheduler decides *when* a request gets a forward pass; this object decides
what a new token *means*: it detokenizes, watches stop tokens and stop strings,
counts budget, and reports a `Delta` per token and a `Done` at the end to its sink
(a queue for synchronous callers, an asyncio bridge for the server).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from tokenizers import Tokenizer

from lmforge.infer.detokenize import IncrementalDecoder
from lmforge.infer.grammar import Constraint
from lmforge.infer.sampling import Penalties, SamplingParams, make_generator
from lmforge.infer.stops import StopMatcher


@dataclass
class TokenLogprob:
    token: str
    token_id: int
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)   # most likely alternatives


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    finish_reason: str                 # "stop" | "length" ("cancelled" if the caller went away)
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None
    prompt_token_ids: list[int] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob | None] | None = None   # with echo; the first token has none


@dataclass
class Delta:
    text: str                          # may be empty while a character or stop string is pending
    token_id: int
    logprob: TokenLogprob | None


@dataclass
class Done:
    result: GenerationResult


@dataclass
class Failed:
    error: BaseException


Event = Delta | Done | Failed


def token_text(tokenizer: Tokenizer, token_id: int) -> str:
    """How one token is shown in logprobs (special tokens included, partial bytes as U+FFFD)."""
    return tokenizer.decode([token_id], skip_special_tokens=False)


class Request:
    def __init__(self, prompt_ids: list[int], params: SamplingParams, tokenizer: Tokenizer,
                 stop_ids: set[int], vocab_size: int, sink: Callable[[Event], None],
                 prompt_logprobs: bool = False, constraint: Constraint | None = None):
        self.prompt_ids = prompt_ids
        self.params = params
        self.tok = tokenizer
        self.stop_ids = stop_ids
        self.sink = sink
        self.want_prompt_logprobs = prompt_logprobs
        self.generator = make_generator(params.seed)
        self.penalties = Penalties(params, vocab_size, prompt_ids) if params.penalized else None
        self.decoder = IncrementalDecoder(tokenizer)
        self.stopper = StopMatcher(params.stop)
        self.constraint = constraint    # the grammar the output must follow, if any
        self.cached = 0                 # tokens of this sequence already in the KV cache
        self.token_ids: list[int] = []
        self.text: list[str] = []
        self.logprobs: list[TokenLogprob] | None = [] if params.logprobs else None
        self.prompt_logprobs: list[TokenLogprob | None] | None = [None] if prompt_logprobs else None
        self.finish_reason: str | None = None
        self._cancelled = threading.Event()

    @property
    def wants_logprobs(self) -> bool:
        return self.params.logprobs

    @property
    def top_n(self) -> int:
        return self.params.top_logprobs

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Ask the scheduler to drop this request at its next step (client went away, stop button)."""
        self._cancelled.set()

    def make_logprob(self, token_id: int, logprob: float, top_ids: list[int],
                     top_lps: list[float]) -> TokenLogprob:
        return TokenLogprob(token_text(self.tok, token_id), token_id, logprob,
                            [(token_text(self.tok, i), lp) for i, lp in zip(top_ids, top_lps)])

    def last_tokens(self, n: int) -> list[int]:
        """The last n tokens of prompt + completion (fewer if the sequence is shorter)."""
        tail = self.token_ids[-n:]
        missing = n - len(tail)
        return (self.prompt_ids[-missing:] if missing else []) + tail

    def accept(self, token_id: int, context_len: int, logprob: TokenLogprob | None = None) -> bool:
        """Record a sampled token; return True when the request is finished."""
        self.token_ids.append(token_id)
        if self.penalties is not None:
            self.penalties.add(token_id)
        if logprob is not None and self.logprobs is not None:
            self.logprobs.append(logprob)
        if self.constraint is not None:
            self.constraint.advance(token_id)
        text, hit = "", False
        if token_id in self.stop_ids and not self.params.ignore_eos:
            self.finish_reason = "stop"
        else:
            text, hit = self.stopper.push(self.decoder.push(token_id))
            if hit or (self.constraint is not None and self.constraint.complete):
                self.finish_reason = "stop"
            elif (len(self.token_ids) >= self.params.max_tokens
                  or len(self.prompt_ids) + len(self.token_ids) >= context_len):
                self.finish_reason = "length"
        if self.finish_reason is not None and not hit:
            text += self.stopper.push(self.decoder.flush())[0] + self.stopper.flush()
        self.text.append(text)
        self.sink(Delta(text, token_id, logprob))
        return self.finish_reason is not None

    def finish(self, reason: str | None = None) -> None:
        if reason is not None:
            self.finish_reason = reason
        self.sink(Done(GenerationResult(
            text="".join(self.text), token_ids=self.token_ids, finish_reason=self.finish_reason or "stop",
            prompt_tokens=len(self.prompt_ids), completion_tokens=len(self.token_ids),
            logprobs=self.logprobs, prompt_token_ids=self.prompt_ids,
            prompt_logprobs=self.prompt_logprobs)))

    def fail(self, error: BaseException) -> None:
        self.sink(Failed(error))
