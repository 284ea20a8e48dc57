"""OpenAI response objects built from engine results: choices, logprobs, usage, chunks."""

from __future__ import annotations

import json
import time
import uuid

from lmforge.infer.request import GenerationResult, TokenLogprob


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sse(obj: dict | str) -> str:
    """One server-sent event. JSON leaves U+0085, U+2028 and U+2029 unescaped, and line readers
    that split like `str.splitlines` (httpx's `aiter_lines` among them) would cut the event there."""
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    if not data.isascii():
        data = data.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"data: {data}\n\n"


class CompletionLogprobs:
    """The legacy completions `logprobs` object; `text_offset` counts characters of the returned text."""

    def __init__(self, offset: int = 0):
        self.offset = offset

    def build(self, tokens: list[str], entries: list[TokenLogprob | None]) -> dict:
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for token, e in zip(tokens, entries):
            out["tokens"].append(token)
            out["token_logprobs"].append(None if e is None else e.logprob)
            out["top_logprobs"].append(None if e is None else _first_of_each(e.top))
            out["text_offset"].append(self.offset)
            self.offset += len(token)
        return out


def _first_of_each(top: list[tuple[str, float]]) -> dict[str, float]:
    """Alternatives keyed by text: two tokens can decode to the same text (say, halves of one
    character), and the more likely one, listed first, keeps the key."""
    out: dict[str, float] = {}
    for text, logprob in top:
        out.setdefault(text, logprob)
    return out


def chat_logprobs(entries: list[TokenLogprob]) -> dict:
    def one(token: str, logprob: float) -> dict:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}
    return {"content": [dict(one(e.token, e.logprob), top_logprobs=[one(t, lp) for t, lp in e.top])
                        for e in entries]}


class Envelope:
    """The fields every object of one response shares."""

    def __init__(self, kind: str, model: str):
        self.id = new_id("chatcmpl" if kind.startswith("chat") else "cmpl")
        self.kind, self.model, self.created = kind, model, int(time.time())

    def wrap(self, choices: list[dict], **extra) -> dict:
        return {"id": self.id, "object": self.kind, "created": self.created, "model": self.model,
                "choices": choices, **extra}


def total_usage(results: list[GenerationResult]) -> dict:
    return usage(sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results))
