"""The server's OpenAPI document: every endpoint's request body and the errors it can answer.

The endpoints read their bodies by hand (the size limit must apply before parsing, and errors
must have OpenAI's shape), so FastAPI cannot see the pydantic models they validate with. This
module puts those models into /openapi.json — as the operations' request bodies, with their
`$defs` as components — and lists the error responses, so /docs, client generators and API
fuzzers see the real API.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


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
                model = bodies.get(path) if method == "post" else None
                if model is not None:
                    components.update(_schema(model))
                    op["requestBody"] = {"required": True, "content": {"application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        app.openapi_schema = spec
        return spec

    app.openapi = document


def _schema(model: type[BaseModel]) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    out = dict(schema.pop("$defs", {}))
    out[model.__name__] = schema
    return out
