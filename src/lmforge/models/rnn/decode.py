"""The recurrent families' decode kernel: O(1) state per sequence, one cell step per token.

It implements the scheduler's decoder interface (see infer/scheduler.py) over a state
"cache" with one row per decoding sequence plus a prefill row, like the KV slot cache
of the transformer, but each row is the recurrent state alone, whatever its length.
"""

from __future__ import annotations

import torch

from lmforge.models.rnn.model import RecurrentLM

# A recurrent model has no context window; the engine still needs a bound on prompt plus
# completion (a request without max_tokens generates up to it). 16 training windows.
CONTEXT_WINDOWS = 16


class StateCache:
    def __init__(self, model: RecurrentLM, rows: int):
        self.state = model.zero_state(rows + 1)
        self.rows = rows
        self.prefill_row = rows

    def move(self, src: int, dst: int, length: int) -> None:
        self.state[:, :, dst] = self.state[:, :, src]


class RecurrentDecoder:
    window = 1

    def __init__(self, model: RecurrentLM):
        self.model = model
        self.context = model.cfg.max_seq_len * CONTEXT_WINDOWS
        self.device = model.embed.weight.device

    def make_cache(self, rows: int) -> StateCache:
        return StateCache(self.model, rows)

    def inputs(self, tokens: list[int], start: int, end: int) -> torch.Tensor:
        return torch.tensor(tokens[start:end], device=self.device)

    def last_inputs(self, tails: list[list[int]]) -> torch.Tensor:
        return torch.tensor([t[-1] for t in tails], device=self.device)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.head(hidden)

    def prefill(self, ids: torch.Tensor, start: int, cache: StateCache) -> torch.Tensor:
        row = cache.prefill_row
        state = cache.state[:, :, row:row + 1]
        if start == 0:
            state = torch.zeros_like(state)
        out, state = self.model.hidden(ids.unsqueeze(0), state)
        cache.state[:, :, row:row + 1] = state
        return out[0]

    def _step(self, ids: torch.Tensor, cache: StateCache) -> torch.Tensor:
        B = ids.shape[0]
        out, state = self.model.hidden(ids.unsqueeze(1), cache.state[:, :, :B])
        cache.state[:, :, :B] = state
        return out[:, 0]

    def decode(self, ids: torch.Tensor, cached: list[int], cache: StateCache) -> torch.Tensor:
        return self.logits(self._step(ids, cache))

    def decode_and_prefill(self, ids: torch.Tensor, cached: list[int], prompt_ids: torch.Tensor,
                           start: int, cache: StateCache) -> torch.Tensor:
        return torch.cat([self._step(ids, cache), self.prefill(prompt_ids, start, cache)])
