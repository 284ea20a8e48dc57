"""Continuous batching: one thread runs the model for every request in flight.

Each iteration of the loop
  1. drops cancelled requests,
  2. runs one batched decode step for every sequence that is generating, with the
     next chunk (at most `prefill_chunk` tokens) of the oldest waiting prompt in the
     same forward pass, so the weights are read from memory once for both;
     or, when nothing is generating, prefills up to `prefill_chunk` prompt tokens on
     their own: several short prompts, or one chunk of a long one.
Requests join after their prefill and leave as soon as they finish, so a long
prompt delays the others by one chunk per step, never by its whole length.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable

import torch

from lmforge.infer.request import Request
from lmforge.infer.sampling import sample_batch


class Scheduler:
    """decoder: the model family's decode kernel (see models/registry.py): `inputs`, `window`,
    `last_inputs`, `make_cache`, `prefill`, `decode`, `decode_and_prefill`, `logits`, `context`.
    before_work: called on the scheduler thread whenever it admits a request while no other is in
    flight (the engine brings its copy of the weights up to date there)."""

    def __init__(self, decoder, *, max_batch: int = 16, prefill_chunk: int = 256,
                 before_work: Callable[[], None] | None = None):
        self.decoder = decoder
        self.context = decoder.context
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk
        self.before_work = before_work or (lambda: None)
        self.cache = decoder.make_cache(max_batch)
        self.waiting: collections.deque[Request] = collections.deque()
        self.prefilling: Request | None = None
        self.running: list[Request] = []       # running[i] owns cache row i
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name="lmforge-scheduler", daemon=True)
        self.thread.start()

    # -- public -------------------------------------------------------------------------

    def submit(self, request: Request) -> None:
        with self.cond:
            if self.closed:
                raise RuntimeError("the engine is closed")
            self.waiting.append(request)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join(timeout=10)

    @property
    def occupancy(self) -> int:
        return len(self.running)

    @property
    def queued(self) -> int:
        return len(self.waiting) + (self.prefilling is not None)

    # -- the loop -----------------------------------------------------------------------

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self.cond:
                    while not (self.waiting or self.prefilling or self.running or self.closed):
                        self.cond.wait()
                    if self.closed:
                        break
                self._step()
        for r in [*self.waiting, *self.running, *([self.prefilling] if self.prefilling else [])]:
            r.fail(RuntimeError("the engine was closed"))

    def _step(self) -> None:
        for r in [r for r in self.running if r.cancelled]:
            self._retire(r, "cancelled")
        if self.running:
            # the next prompt chunk rides along with the decode step, which reads the weights anyway
            r = self._next_prefill()
            try:
                self._decode_step(r)
            except Exception as e:
                if r is not None and self.prefilling is r:
                    self.prefilling = None
                    r.fail(e)
                for x in list(self.running):
                    x.fail(e)
                self.running.clear()
            return
        # nothing is decoding: prefill prompts on their own, up to `prefill_chunk` tokens in all
        budget = self.prefill_chunk
        while budget > 0 and (r := self._next_prefill()) is not None:
            try:
                budget -= self._prefill_chunk(r, budget)
            except Exception as e:   # a failure belongs to that request, not to the server
                self.prefilling = None
                if r in self.running:       # it failed after joining the batch (its first token)
                    self._remove(r)
                r.fail(e)

    def _next_prefill(self) -> Request | None:
        """The request being prefilled, or the next waiting one if a decode row is free."""
        idle = self.prefilling is None and not self.running
        with self.cond:
            while self.prefilling is None and self.waiting and len(self.running) < self.max_batch:
                r = self.waiting.popleft()
                if r.cancelled:
                    r.finish("cancelled")
                else:
                    self.prefilling = r
        if idle and self.prefilling is not None:
            # the first request after an idle moment (even one admitted in the step that finished the
            # last): the engine brings its weights up to date before any of its tokens are computed
            self.before_work()
        if self.prefilling is not None and self.prefilling.cancelled:
            self.prefilling.finish("cancelled")
            self.prefilling = None
            return self._next_prefill()
        return self.prefilling

    def _prefill_chunk(self, r: Request, budget: int) -> int:
        """Prefill up to `budget` more prompt tokens of `r`; return how many were processed."""
        start, end, ids = self._next_chunk(r, budget)
        self._prefilled(r, self.decoder.prefill(ids, start, self.cache), start, end)
        return end - start

    def _next_chunk(self, r: Request, budget: int) -> tuple[int, int, torch.Tensor]:
        """The next (at most `budget`) prompt tokens of `r` to prefill: start, end and their ids."""
        start = r.cached
        end = min(len(r.prompt_ids), start + budget)
        return start, end, self.decoder.inputs(r.prompt_ids, start, end)

    def _prefilled(self, r: Request, hidden: torch.Tensor, start: int, end: int) -> None:
        """After prompt tokens start..end-1 of `r` are in the prefill row (`hidden`: their final
        hidden states): score them if asked, and once the prompt is complete, sample its first
        token and move it into the decoding batch."""
        r.cached = end
        if r.want_prompt_logprobs:
            self._record_prompt_logprobs(r, hidden, start, end)
        if end < len(r.prompt_ids):
            return
        self.prefilling = None
        if r.params.max_tokens == 0 or len(r.prompt_ids) >= self.context:
            r.finish("length")
            return
        logits = self.decoder.logits(hidden[-1:]).float()
        row = len(self.running)
        self.cache.move(self.cache.prefill_row, row, r.cached)
        self.running.append(r)
        self._emit(logits, [r])

    def _record_prompt_logprobs(self, r: Request, hidden: torch.Tensor, start: int, end: int) -> None:
        # position i predicts token i + 1: this chunk scores prompt[start + 1 : end + 1]
        targets = r.prompt_ids[start + 1:end + 1]
        if not targets:
            return
        logprobs = torch.log_softmax(self.decoder.logits(hidden[:len(targets)]).float(), dim=-1)
        chosen = logprobs.gather(1, torch.tensor(targets, device=logprobs.device).unsqueeze(1))[:, 0]
        top_lps, top_ids = (logprobs.topk(r.top_n, dim=-1) if r.top_n else (None, None))
        for i, (tid, lp) in enumerate(zip(targets, chosen.tolist())):
            top = ((top_ids[i].tolist(), top_lps[i].tolist()) if r.top_n else ([], []))
            r.prompt_logprobs.append(r.make_logprob(tid, lp, *top))

    def _decode_step(self, r: Request | None) -> None:
        """One decode step for every running sequence, with the next chunk of prompt `r`, if
        any, in the same pass."""
        batch = list(self.running)     # a copy: requests that finish in _emit leave self.running
        ids = self.decoder.last_inputs([x.last_tokens(self.decoder.window) for x in batch])
        cached = [x.cached for x in batch]
        if r is None:
            logits = self.decoder.decode(ids, cached, self.cache).float()
        else:
            start, end, prompt = self._next_chunk(r, self.prefill_chunk)
            hidden = self.decoder.decode_and_prefill(ids, cached, prompt, start, self.cache)
            logits = self.decoder.logits(hidden[:len(batch)]).float()
        for x in batch:
            x.cached += 1
        self._emit(logits, batch)
        if r is not None:
            self._prefilled(r, hidden[len(batch):], start, end)

    def _emit(self, logits: torch.Tensor, batch: list[Request]) -> None:
        """Sample one token per row of `logits` and hand it to its request."""
        for i, r in enumerate(batch):
            if r.constraint is not None:
                r.constraint.mask(logits[i])
        chosen = sample_batch(logits, [r.params for r in batch], [r.generator for r in batch],
                              [r.penalties for r in batch])
        logprobs = None
        if any(r.wants_logprobs for r in batch):
            logprobs = torch.log_softmax(logits, dim=-1)
        for i, (r, tid) in enumerate(zip(batch, chosen)):
            info = None
            if r.wants_logprobs:
                lp = logprobs[i]
                top_lps, top_ids = lp.topk(r.top_n) if r.top_n else (lp[:0], lp[:0].long())
                info = r.make_logprob(tid, float(lp[tid]), top_ids.tolist(), top_lps.tolist())
            try:
                finished = r.accept(tid, self.context, info)
            except Exception as e:      # one request's failure (its grammar refused a token) is not the batch's
                self._remove(r)
                r.fail(e)
                continue
            if finished:
                self._retire(r, None)

    def _retire(self, r: Request, reason: str | None) -> None:
        self._remove(r)
        r.finish(reason)

    def _remove(self, r: Request) -> None:
        row = self.running.index(r)
        last = len(self.running) - 1
        if row != last:   # keep rows dense: the last sequence takes the freed row
            moved = self.running[last]
            self.cache.move(last, row, moved.cached)
            self.running[row] = moved
        self.running.pop()
