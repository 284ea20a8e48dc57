"""Errors in OpenAI's wire shape: {"error": {"message", "type", "param", "code"}}.

Clients (the openai package, lm-eval, LangChain) read these fields, so every
failure the server reports, from bad JSON to an unknown route, uses this shape.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lmforge.errors import UserError

TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
         405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
         503: "server_unavailable", 500: "server_error"}


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        return JSONResponse(error_body(e.status, e.message, e.param, e.code), e.status, headers=e.headers)

    @app.exception_handler(UserError)
    async def _user_error(request: Request, e: UserError):
        return JSONResponse(error_body(400, str(e)), 400)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, e: HTTPException):
        return JSONResponse(error_body(e.status_code, str(e.detail)), e.status_code)

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception):
        return JSONResponse(error_body(500, f"internal error: {type(e).__name__}"), 500)
