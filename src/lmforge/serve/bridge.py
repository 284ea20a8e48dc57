"""From the scheduler thread to the server's event loop.

`Generation` submits a request at construction (so a bad prompt fails before
any response is sent), then yields its events in batches: everything that
arrived while the consumer was busy comes at once, so under load a stream
sends fewer, larger chunks instead of falling behind. Leaving the iteration
early, as when a streaming client disconnects, cancels the request.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import AsyncIterator

from lmforge.infer.engine import Engine
from lmforge.infer.request import Done, Event, Failed, GenerationResult
from lmforge.infer.sampling import SamplingParams


class Mailbox:
    """Carries events from the scheduler thread into one event loop.

    Waking a loop from another thread costs a system call; a decode step produces one
    event per sequence, so events are queued here and the loop is woken once per batch.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.items: list[tuple[asyncio.Queue, Event]] = []
        self.lock = threading.Lock()
        self.scheduled = False

    def post(self, inbox: asyncio.Queue, event: Event) -> None:
        with self.lock:
            self.items.append((inbox, event))
            if self.scheduled:
                return
            self.scheduled = True
        self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self.lock:
            items, self.items, self.scheduled = self.items, [], False
        for inbox, event in items:
            inbox.put_nowait(event)


_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Mailbox] = weakref.WeakKeyDictionary()


class Generation:
    def __init__(self, engine: Engine, prompt_ids: list[int], params: SamplingParams, prompt_logprobs: bool):
        loop = asyncio.get_running_loop()
        self.mailbox = _mailboxes.get(loop) or _mailboxes.setdefault(loop, Mailbox(loop))
        self.inbox: asyncio.Queue[Event] = asyncio.Queue()
        self.request = engine.submit(prompt_ids, params, self._deliver, prompt_logprobs)

    def _deliver(self, event: Event) -> None:   # runs on the scheduler thread
        try:
            self.mailbox.post(self.inbox, event)
        except RuntimeError:   # the event loop is gone (server shutting down)
            self.request.cancel()

    async def batches(self) -> AsyncIterator[list[Event]]:
        try:
            while True:
                events = [await self.inbox.get()]
                while not self.inbox.empty():
                    events.append(self.inbox.get_nowait())
                for event in events:
                    if isinstance(event, Failed):
                        raise event.error
                yield events
                if isinstance(events[-1], Done):
                    return
        finally:
            self.request.cancel()

    async def result(self) -> GenerationResult:
        async for events in self.batches():
            if isinstance(events[-1], Done):
                return events[-1].result
