"""Prometheus metrics for `GET /metrics`.

Each app owns its registry (several servers can live in one process, as in tests).
Batch occupancy and queue length are read from the scheduler at scrape time.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lmforge_requests", "API requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("lmforge_prompt_tokens", "Prompt tokens processed", registry=r)
        self.completion_tokens = Counter("lmforge_completion_tokens", "Tokens generated", registry=r)
        self.latency = Histogram("lmforge_request_latency_seconds", "Time from request to last byte",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("lmforge_time_to_first_token_seconds", "Time from request to first token",
                              buckets=LATENCY_BUCKETS, registry=r)
        self.running = Gauge("lmforge_batch_occupancy", "Sequences in the decode batch", registry=r)
        self.waiting = Gauge("lmforge_queue_length", "Requests waiting for or in prefill", registry=r)
        self.capacity = Gauge("lmforge_batch_capacity", "Maximum sequences per decode batch", registry=r)

    def watch(self, occupancy: Callable[[], float], queued: Callable[[], float], capacity: int) -> None:
        self.running.set_function(occupancy)
        self.waiting.set_function(queued)
        self.capacity.set(capacity)

    def render(self) -> bytes:
        return generate_latest(self.registry)
