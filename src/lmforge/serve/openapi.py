"""The server's OpenAPI document: every endpoint's request body, its answer and its errors.

The endpoints read their bodies by hand (the size limit must apply before parsing, and errors
must have OpenAI's shape), so FastAPI cannot see the pydantic models they validate with. This
module puts those models into /openapi.json — as the operations' request bodies, with their
`$defs` as components — with the answers of serve/responses.py and the error responses, so
/docs, client generators and API fuzzers see the real API.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from lmforge.serve.responses import ANSWERS, STREAMS, Health


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


ERRORS = {400: "invalid request (the message names the field)", 401: "missing or wrong API key",
          404: "unknown model", 413: "request body too large", 429: "rate limit (see Retry-After)",
          503: "the model is still loading, or failed to load"}


def install(app: FastAPI, bodies: dict[str, type[BaseModel]]) -> None:
    """bodies: path of a POST endpoint -> the model its body is validated with."""
    def document() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        components.update(_schema(ErrorBody))
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for path, operations in spec["paths"].items():
            for method, op in operations.items():
                op.setdefault("responses", {}).pop("422", None)
                for status, text in ERRORS.items():
                    op["responses"][str(status)] = {"description": text, "content": error}
                if path in ANSWERS:
                    op["responses"]["200"] = {"description": "success", "content": _answer(ANSWERS[path], path)}
                    components.update(_schema(ANSWERS[path]))
                if path == "/health":       # its 503 says loading or failed, in its own shape
                    op["responses"]["503"] = {"description": "loading, or failed to load",
                                              "content": _answer(Health, path)}
                model = bodies.get(path) if method == "post" else None
                if model is not None:
                    components.update(_schema(model))
                    op["requestBody"] = {"required": True, "content": {"application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        app.openapi_schema = spec
        return spec

    app.openapi = document


def _answer(model: type[BaseModel], path: str) -> dict:
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}
    if path in STREAMS:
        content["text/event-stream"] = {"schema": {     # one event
            "type": "object", "required": ["data"], "properties": {"data": {
                "type": "string", "description": f"with stream=true: a {model.__name__} chunk as JSON "
                                                 f"(choices hold `delta`s for chat); the last event is [DONE]"}}}}
    return content


def _schema(model: type[BaseModel]) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    out = dict(schema.pop("$defs", {}))
    out[model.__name__] = schema
    return out
