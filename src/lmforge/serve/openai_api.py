"""The OpenAI-compatible endpoints: models, completions, chat completions, tokenize.

Completions support `echo` + `logprobs` (with max_tokens=0 they return the
prompt's token logprobs, first one null, which lm-evaluation-harness needs for
log-likelihood tasks). Both generation endpoints stream as server-sent events
ending with `data: [DONE]`, honour `stream_options.include_usage`, and report
`usage` and `finish_reason`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from lmforge.infer.engine import Engine
from lmforge.infer.request import Delta, Done, token_text
from lmforge.serve.audit import prompt_digest
from lmforge.serve.bridge import Generation
from lmforge.serve.errors import APIError
from lmforge.serve.formatting import (CompletionLogprobs, Envelope, chat_logprobs, sse, total_usage, usage)
from lmforge.serve.limits import Guard
from lmforge.serve.metrics import Metrics
from lmforge.serve.schemas import (ChatRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest, parse)
from lmforge.serve.tools import call_grammar, history, parse_call


@dataclass
class ServerState:
    model_name: str
    guard: Guard
    metrics: Metrics
    max_tokens_limit: int | None = None
    engine: Engine | None = None
    classifier: object | None = None          # infer.classifier.Classifier, for a classifier run
    embedder: object | None = None            # infer.embedder.Embedder: an encoder run's, or made on demand
    load_error: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    _embedder_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def loaded(self) -> bool:
        return self.engine is not None or self.classifier is not None or self.embedder is not None

    def _loading(self) -> APIError:
        return APIError(503, self.load_error or "the model is still loading", code="model_loading")

    def ready(self) -> Engine:
        if self.engine is None and self.classifier is not None:
            raise APIError(400, "this model is a classifier: it does not generate; POST /v1/classify",
                           code="model_is_classifier")
        if self.engine is None and self.embedder is not None:
            raise APIError(400, "this model is an encoder: it does not generate; POST /v1/embeddings",
                           code="model_is_encoder")
        if self.engine is None:
            raise self._loading()
        return self.engine

    def ready_classifier(self):
        if self.classifier is None and self.loaded:
            raise APIError(400, "this model has no classifier head (train one with train.objective = "
                                "\"classify\")", code="not_a_classifier")
        if self.classifier is None:
            raise self._loading()
        return self.classifier

    def ready_embedder(self):
        """An encoder run's embedder; a generating or classifying run's is made from its model on first use."""
        from lmforge.infer.embedder import Embedder
        with self._embedder_lock:
            if self.embedder is None and self.engine is not None:
                self.embedder = Embedder(self.engine.model, self.engine.tokenizer)
            elif self.embedder is None and self.classifier is not None:
                self.embedder = Embedder(self.classifier.model, self.classifier.tokenizer)
        if self.embedder is None:
            raise self._loading()
        return self.embedder

    def check_model(self, name: str | None) -> None:
        if name and name != self.model_name:
            raise APIError(404, f"model {name!r} not found; this server serves {self.model_name!r}",
                           param="model", code="model_not_found")

    def max_tokens(self, asked: int | None, engine: Engine) -> int:
        limit = self.max_tokens_limit
        if asked is None:
            return min(limit or engine.context, engine.context)
        if asked < 0:
            raise APIError(400, f"max_tokens must be >= 0, got {asked}", param="max_tokens")
        if limit is not None and asked > limit:
            raise APIError(400, f"max_tokens is {asked}; this server allows at most {limit}", param="max_tokens")
        if asked > engine.context:
            raise APIError(400, f"max_tokens is {asked}; the model's context is {engine.context} tokens",
                           param="max_tokens")
        return asked


def build_router(state: ServerState) -> APIRouter:
    router = APIRouter()
    guard = state.guard

    @router.get("/v1/models")
    async def models(request: Request):
        guard.authenticate(request)
        engine = state.ready()
        return {"object": "list", "data": [{"id": state.model_name, "object": "model", "created": state.created,
                                            "owned_by": "lmforge", "max_model_len": engine.context}]}

    @router.post("/v1/completions")
    async def completions(request: Request):
        guard.authenticate(request)
        return await complete(state, request, await guard.json_body(request))

    @router.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        guard.authenticate(request)
        return await chat(state, request, await guard.json_body(request))

    @router.post("/tokenize")
    async def tokenize(request: Request):
        guard.authenticate(request)
        body = parse(TokenizeRequest, await guard.json_body(request))
        engine = state.ready()
        state.check_model(body.model)
        if (body.prompt is None) == (body.messages is None):
            raise APIError(400, "send exactly one of 'prompt' or 'messages'")
        ids = (engine.encode(body.prompt, body.add_special_tokens) if body.prompt is not None
               else engine.apply_chat_template(history(body.messages, None)))
        return {"tokens": ids, "count": len(ids), "max_model_len": engine.context}

    @router.post("/detokenize")
    async def detokenize(request: Request):
        guard.authenticate(request)
        body = parse(DetokenizeRequest, await guard.json_body(request))
        engine = state.ready()
        state.check_model(body.model)
        if not all(0 <= t < engine.vocab_size for t in body.tokens):
            raise APIError(400, f"token ids must be in [0, {engine.vocab_size})", param="tokens")
        return {"prompt": engine.decode(body.tokens)}

    return router


def _common(state: ServerState, request: Request, body) -> Engine:
    engine = state.ready()
    state.check_model(body.model)
    if body.n != 1:
        raise APIError(400, "only n=1 is supported", param="n")
    request.state.start = time.perf_counter()
    return engine


def _note_usage(request: Request, results) -> None:
    request.state.prompt_tokens = sum(r.prompt_tokens for r in results)
    request.state.completion_tokens = sum(r.completion_tokens for r in results)


def _first_token(state: ServerState, request: Request, seen: list[bool]) -> None:
    if not seen[0]:
        seen[0] = True
        state.metrics.ttft.observe(time.perf_counter() - request.state.start)


async def complete(state: ServerState, request: Request, data: dict):
    body = parse(CompletionRequest, data)
    engine = _common(state, request, body)
    prompts = body.prompts()
    if body.stream and len(prompts) > 1:
        raise APIError(400, "streaming supports one prompt per request", param="prompt")
    want_lp = body.logprobs is not None
    params = body.sampling(state.max_tokens(body.max_tokens, engine), want_lp, body.logprobs or 0, body.echo)
    request.state.prompt_sha256 = prompt_digest(body.prompt)
    ids = [engine.prompt_ids(p) for p in prompts]   # every prompt is checked before any is queued
    texts = [p if isinstance(p, str) else engine.decode(i) for p, i in zip(prompts, ids)]
    gens = [Generation(engine, i, params, prompt_logprobs=body.echo and want_lp) for i in ids]
    env = Envelope("text_completion", state.model_name)
    seen = [False]

    def tokens_of(id_list: list[int]) -> list[str]:
        return [token_text(engine.tokenizer, t) for t in id_list]

    if not body.stream:
        choices, results = [], []
        for index, (gen, text) in enumerate(zip(gens, texts)):
            result = await gen.result()
            _first_token(state, request, seen)
            results.append(result)
            logprobs = None
            if want_lp:   # with echo, the prompt's tokens come first (the very first scored as null)
                lp = CompletionLogprobs()
                parts = [lp.build(tokens_of(result.prompt_token_ids), result.prompt_logprobs)] if body.echo else []
                parts.append(lp.build(tokens_of(result.token_ids), result.logprobs))
                logprobs = {k: sum((p[k] for p in parts), []) for k in parts[-1]}
            choices.append({"index": index, "text": (text if body.echo else "") + result.text,
                            "logprobs": logprobs, "finish_reason": result.finish_reason})
        _note_usage(request, results)
        return env.wrap(choices, usage=total_usage(results))

    gen, text = gens[0], texts[0]

    async def events():
        lp = CompletionLogprobs()
        if body.echo:
            yield sse(env.wrap([{"index": 0, "text": text, "logprobs": None, "finish_reason": None}]))
        async for batch in gen.batches():
            deltas = [e for e in batch if isinstance(e, Delta)]
            text = "".join(d.text for d in deltas)
            if deltas and (text or want_lp):
                _first_token(state, request, seen)
                logprobs = lp.build([d.logprob.token for d in deltas], [d.logprob for d in deltas]) \
                    if want_lp else None
                yield sse(env.wrap([{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": None}]))
            if isinstance(batch[-1], Done):
                r = batch[-1].result
                _note_usage(request, [r])
                yield sse(env.wrap([{"index": 0, "text": "", "logprobs": None, "finish_reason": r.finish_reason}]))
                if body.include_usage:
                    yield sse(env.wrap([], usage=usage(r.prompt_tokens, r.completion_tokens)))
        yield sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")


async def chat(state: ServerState, request: Request, data: dict):
    body = parse(ChatRequest, data)
    engine = _common(state, request, body)
    messages = body.messages_for_template
    ids = engine.prompt_ids(engine.apply_chat_template(messages))
    asked = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    params = body.sampling(state.max_tokens(asked, engine), body.logprobs, body.top_logprobs or 0,
                           grammar=call_grammar(body.tools, body.tool_choice))
    request.state.prompt_sha256 = prompt_digest(messages)
    gen = Generation(engine, ids, params, prompt_logprobs=False)
    env = Envelope("chat.completion" if not body.stream else "chat.completion.chunk", state.model_name)
    seen = [False]
    may_call = bool(body.tools) and body.tool_choice != "none"

    if not body.stream:
        r = await gen.result()
        _first_token(state, request, seen)
        _note_usage(request, [r])
        call = parse_call(r.text, body.tools) if may_call else None
        message = {"role": "assistant", "content": None, "tool_calls": [call]} if call else \
            {"role": "assistant", "content": r.text}
        choice = {"index": 0, "message": message,
                  "logprobs": chat_logprobs(r.logprobs) if body.logprobs and not call else None,
                  "finish_reason": "tool_calls" if call else r.finish_reason}
        return env.wrap([choice], usage=usage(r.prompt_tokens, r.completion_tokens))

    extra = {"usage": None} if body.include_usage else {}
    # a tool call is sent whole at the end; with tool_choice "auto" text is held only until
    # its first character shows whether the answer is a call ("{") or free text
    held: list[Delta] | None = [] if may_call else None
    calling = may_call and body.tool_choice not in (None, "auto")    # forced: a call from the start

    def chunk(delta: dict, logprobs=None, finish_reason=None) -> str:
        return sse(env.wrap([{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
                            **extra))

    async def events():
        nonlocal held, calling
        yield chunk({"role": "assistant", "content": ""})
        async for batch in gen.batches():
            deltas = [e for e in batch if isinstance(e, Delta)]
            if held is not None:
                held += deltas
                first = "" if calling else next((d.text for d in held if d.text), "")
                if first.startswith("{"):
                    calling = True
                elif first:
                    deltas, held = held, None       # free text after all: send it on, logprobs too
            text = "".join(d.text for d in deltas)
            if held is None and deltas and (text or body.logprobs):
                _first_token(state, request, seen)
                logprobs = chat_logprobs([d.logprob for d in deltas]) if body.logprobs else None
                yield chunk({"content": text}, logprobs)
            if isinstance(batch[-1], Done):
                r = batch[-1].result
                _note_usage(request, [r])
                call = parse_call(r.text, body.tools) if held is not None else None
                if call:
                    _first_token(state, request, seen)
                    yield chunk({"tool_calls": [{"index": 0, **call}]})
                elif held is not None and r.text:
                    yield chunk({"content": r.text})
                yield chunk({}, finish_reason="tool_calls" if call else r.finish_reason)
                if body.include_usage:
                    yield sse(env.wrap([], usage=usage(r.prompt_tokens, r.completion_tokens)))
        yield sse("[DONE]")

    return StreamingResponse(events(), media_type="text/event-stream")
