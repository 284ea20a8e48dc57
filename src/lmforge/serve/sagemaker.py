"""Amazon SageMaker's container contract: `GET /ping` and `POST /invocations` on port 8080.

SageMaker puts the model artifacts in /opt/ml/model and authenticates callers
itself (IAM-signed InvokeEndpoint), so these two routes take no API key. An
invocation is a chat completion when the body has "messages", else a completion.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lmforge.serve.openai_api import ServerState, chat, complete

MODEL_DIR = "/opt/ml/model"
PORT = 8080


def build_router(state: ServerState) -> APIRouter:
    router = APIRouter()

    @router.get("/ping")
    async def ping():
        return JSONResponse({"status": "ok" if state.engine else "loading"}, 200 if state.engine else 503)

    @router.post("/invocations")
    async def invocations(request: Request):
        data = await state.guard.json_body(request)
        request.state.key_id = None
        return await (chat if "messages" in data else complete)(state, request, data)

    return router
