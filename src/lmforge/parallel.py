"""Ordered, bounded work on a process pool, for the data steps that stream a corpus."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                initializer: Callable[..., None], initargs: tuple = ()) -> Iterator[R]:
    """fn over items in worker processes, results in input order.

    `Pool.imap` alone reads its whole input ahead into a queue; here at most 4 items per worker
    are read beyond the results already taken, so memory does not grow with the input. `items`
    is read lazily, so it may depend on what the caller has seen so far. With one worker
    everything runs in this process (after `initializer(*initargs)`).
    """
    if workers <= 1:
        initializer(*initargs)
        yield from map(fn, items)
        return
    slots = threading.Semaphore(4 * workers)
    stopped = threading.Event()

    def feed():
        for item in items:
            slots.acquire()
            if stopped.is_set():
                return
            yield item

    with multiprocessing.get_context().Pool(workers, initializer, initargs) as pool:
        try:
            for result in pool.imap(fn, feed()):
                slots.release()
                yield result
        finally:
            # unblock the feeder if the caller stops early (an error), so the pool can shut down
            stopped.set()
            for _ in range(4 * workers + 1):
                slots.release()
