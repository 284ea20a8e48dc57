"""ASGI middleware that records every API request in the metrics and the audit log.

It runs when the last byte of the response is sent, so a streamed completion is
recorded with its full latency and token counts. Handlers leave what they know
(key id, token counts, prompt digest) in `request.state`.
"""

from __future__ import annotations

import time

from lmforge.serve.audit import AuditLog
from lmforge.serve.metrics import Metrics

API_PREFIXES = ("/v1/", "/tokenize", "/detokenize", "/invocations")


class RequestRecorder:
    def __init__(self, app, metrics: Metrics, audit: AuditLog | None):
        self.app, self.metrics, self.audit = app, metrics, audit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIXES):
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]
        recorded = [False]

        async def send_and_watch(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body") and not recorded[0]:
                recorded[0] = True
                self._record(scope, status[0], time.perf_counter() - start)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            if not recorded[0]:   # the client went away mid-stream
                self._record(scope, 499 if status[0] == 200 else status[0], time.perf_counter() - start)

    def _record(self, scope, status: int, latency: float) -> None:
        state = scope.get("state", {})
        route = scope.get("route")
        endpoint = route.path if route is not None else "other"
        prompt, completion = state.get("prompt_tokens"), state.get("completion_tokens")
        self.metrics.requests.labels(endpoint, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(latency)
        if prompt:
            self.metrics.prompt_tokens.inc(prompt)
        if completion:
            self.metrics.completion_tokens.inc(completion)
        if self.audit is not None:
            self.audit.record(key_id=state.get("key_id"), endpoint=endpoint, status=status,
                              prompt_tokens=prompt, completion_tokens=completion, latency_s=latency,
                              prompt_sha256=state.get("prompt_sha256"))
