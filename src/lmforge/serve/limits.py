"""API keys, per-key rate limits and request-size limits.

Keys are compared in constant time and only ever stored or logged as a short
SHA-256 digest (the "key id"). Rate limits are a sliding one-minute window per
key id (per client address when the server runs without keys).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import os
import threading
import time

from fastapi import Request

from lmforge.serve.errors import APIError


def resolve_keys(api_key: str | list[str] | None) -> list[str]:
    """Keys from the argument or LMFORGE_API_KEY; either may hold several, comma-separated."""
    raw = api_key if api_key is not None else os.environ.get("LMFORGE_API_KEY", "")
    keys = raw if isinstance(raw, list) else raw.split(",")
    return [k.strip() for k in keys if k.strip()]


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class RateLimiter:
    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.hits: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self.lock = threading.Lock()

    def check(self, who: str) -> None:
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        with self.lock:
            window = self.hits[who]
            while window and now - window[0] >= 60:
                window.popleft()
            if len(window) >= self.per_minute:
                retry = max(1, int(60 - (now - window[0])) + 1)
                raise APIError(429, f"rate limit of {self.per_minute} requests per minute reached; "
                                    f"retry in {retry} s", code="rate_limit_exceeded",
                               headers={"Retry-After": str(retry)})
            window.append(now)


class Guard:
    """The checks every API request passes before it reaches the engine."""

    def __init__(self, keys: list[str], rate_limit: int, max_request_bytes: int):
        self.keys = keys
        self.limiter = RateLimiter(rate_limit)
        self.max_request_bytes = max_request_bytes

    def authenticate(self, request: Request) -> None:
        """Set request.state.key_id, or raise 401/429."""
        if self.keys:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
            if not any(hmac.compare_digest(token.strip().encode(), k.encode()) for k in self.keys):
                raise APIError(401, "invalid API key", code="invalid_api_key")
            request.state.key_id = key_id(token.strip())
        else:
            request.state.key_id = None
        self.limiter.check(request.state.key_id or (request.client.host if request.client else "?"))

    async def json_body(self, request: Request) -> dict:
        """Read the body within the size limit and parse it as a JSON object."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_request_bytes:
            raise self._too_large()
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_request_bytes:
                raise self._too_large()
        try:
            data = json.loads(body, parse_constant=_not_a_number, parse_float=_finite)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise APIError(400, f"request body is not valid JSON: {e}") from None
        except RecursionError:
            raise APIError(400, f"request body is nested more than {MAX_DEPTH} levels deep") from None
        if not isinstance(data, dict):
            raise APIError(400, "request body must be a JSON object")
        _check_values(data)
        return data

    def _too_large(self) -> APIError:
        return APIError(413, f"request body is larger than {self.max_request_bytes} bytes",
                        code="request_too_large")


MAX_DEPTH = 32      # no request of the API nests deeper than a few levels


def _not_a_number(name: str):
    raise APIError(400, f"request body holds {name}, which JSON does not allow")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise APIError(400, f"request body holds the number {text}, too large for a float")
    return value


def _check_values(data) -> None:
    """Depth within MAX_DEPTH and every string valid Unicode text (JSON's \\ud800 escapes can
    make lone surrogates, which no tokenizer can encode)."""
    stack = [(data, 1, None)]     # (value, depth, the top-level field it sits in)
    while stack:
        value, depth, key = stack.pop()
        if depth > MAX_DEPTH:
            raise APIError(400, f"request body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack += [(v, depth + 1, k) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, depth + 1, key) for v in value]
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise APIError(400, f"{key}: holds a lone surrogate (\\ud800-\\udfff), not "
                                    f"valid Unicode text", param=key) from None
