"""`POST /v1/classify`: a classifier run's labels and their probabilities for one text or a list.

    {"input": "a charming film"}  ->  {"object": "list", "model": ...,
                                       "data": [{"index": 0, "label": "positive",
                                                 "scores": {"negative": 0.08, "positive": 0.92}}]}

The shape follows `/v1/embeddings` (one entry per input, in order); no OpenAI endpoint classifies.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from lmforge.serve.errors import APIError
from lmforge.serve.schemas import _Body, parse

MAX_INPUTS = 256


class ClassifyRequest(_Body):
    model: str | None = None
    input: str | list[str] = Field(min_length=1)


def build_router(state) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/classify")
    async def classify(request: Request):
        state.guard.authenticate(request)
        body = parse(ClassifyRequest, await state.guard.json_body(request))
        classifier = state.ready_classifier()
        state.check_model(body.model)
        texts = [body.input] if isinstance(body.input, str) else body.input
        if len(texts) > MAX_INPUTS:
            raise APIError(400, f"input: at most {MAX_INPUTS} texts per request, got {len(texts)}", param="input")
        if not all(t.strip() for t in texts):
            raise APIError(400, "input: every text must be non-empty", param="input")
        results = await run_in_threadpool(classifier.classify, texts)
        return {"object": "list", "model": state.model_name,
                "data": [{"index": i, **r} for i, r in enumerate(results)]}

    return router
