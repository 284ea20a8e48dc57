"""`POST /v1/embeddings` in OpenAI's format, for every run: an encoder's mean-pooled states, a
decoder's (or classifier's) last-token state, unit length (infer/embedder.py).

    {"input": ["a cat", "ein Hund"]}  ->  {"object": "list", "model": ...,
        "data": [{"object": "embedding", "index": 0, "embedding": [0.012, ...]}, ...],
        "usage": {"prompt_tokens": 7, "total_tokens": 7}}

`input` is a text, a list of texts, a list of token ids or a list of such lists; with
`encoding_format` "base64" each vector is its little-endian float32 bytes in base64 (what the
official client asks for by default). `dimensions` other than the model's width is refused.
"""

from __future__ import annotations

import base64
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from lmforge.errors import UserError
from lmforge.serve.errors import APIError
from lmforge.serve.schemas import _Body, parse

MAX_INPUTS = 2048      # OpenAI's limit per request


class EmbeddingsRequest(_Body):
    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


def _inputs(body: EmbeddingsRequest, embedder) -> list[list[int]]:
    raw = body.input
    if isinstance(raw, str):
        raw = [raw]
    if len(raw) > MAX_INPUTS:
        raise APIError(400, f"input: at most {MAX_INPUTS} inputs per request, got {len(raw)}", param="input")
    if all(isinstance(x, int) for x in raw):      # one text as token ids
        return [list(raw)]
    if all(isinstance(x, str) for x in raw):
        if not all(x for x in raw):
            raise APIError(400, "input: every text must be non-empty", param="input")
        return embedder.encode(list(raw))
    return [list(x) for x in raw]


def build_router(state) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/embeddings")
    async def embeddings(request: Request):
        state.guard.authenticate(request)
        body = parse(EmbeddingsRequest, await state.guard.json_body(request))
        embedder = state.ready_embedder()
        state.check_model(body.model)
        if body.dimensions is not None and body.dimensions != embedder.dimensions:
            raise APIError(400, f"dimensions: this model's embeddings have {embedder.dimensions} dimensions "
                                f"(shortening them is not supported)", param="dimensions")
        inputs = _inputs(body, embedder)
        try:
            vectors = await run_in_threadpool(embedder.embed, inputs)
        except UserError as e:
            raise APIError(400, str(e), param="input") from None
        if body.encoding_format == "base64":
            encoded = [base64.b64encode(v.numpy().astype("<f4").tobytes()).decode() for v in vectors]
        else:
            encoded = vectors.tolist()
        n = sum(len(ids) for ids in inputs)
        return {"object": "list", "model": state.model_name,
                "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
                "usage": {"prompt_tokens": n, "total_tokens": n}}

    return router
