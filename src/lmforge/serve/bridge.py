"""From the scheduler thread to the server's event loop.

`Generation` submits a request at construction (so a bad prompt fails before
any response is sent) and is then an async iterator of its events. Leaving the
iteration early, as when a streaming client disconnects, cancels the request.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from lmforge.infer.engine import Engine
from lmforge.infer.request import Done, Event, Failed
from lmforge.infer.sampling import SamplingParams


class Generation:
    def __init__(self, engine: Engine, prompt_ids: list[int], params: SamplingParams, prompt_logprobs: bool):
        self.loop = asyncio.get_running_loop()
        self.inbox: asyncio.Queue[Event] = asyncio.Queue()
        self.request = engine.submit(prompt_ids, params, self._deliver, prompt_logprobs)

    def _deliver(self, event: Event) -> None:   # runs on the scheduler thread
        try:
            self.loop.call_soon_threadsafe(self.inbox.put_nowait, event)
        except RuntimeError:   # the event loop is gone (server shutting down)
            self.request.cancel()

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            while True:
                event = await self.inbox.get()
                if isinstance(event, Failed):
                    raise event.error
                yield event
                if isinstance(event, Done):
                    return
        finally:
            self.request.cancel()

    async def result(self):
        async for event in self:
            if isinstance(event, Done):
                return event.result
