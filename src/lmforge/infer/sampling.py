"""Turning one row of logits into the next token.

The order follows Hugging Face and vLLM: logit_bias and penalties on the raw logits, then
temperature, then the top-k / top-p / min-p filters, then a draw: from the
request's own `torch.Generator` when it has a seed (so a seed reproduces a
completion no matter which other requests share its batch), in one call for all
the rows without one. Temperature 0 means greedy.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import torch

from lmforge.errors import UserError


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0                    # 0 = off
    top_p: float = 1.0                # 1 = off
    min_p: float = 0.0                # 0 = off; keep tokens with p >= min_p * p_max
    repetition_penalty: float = 1.0   # HF/CTRL style, over prompt and completion tokens
    frequency_penalty: float = 0.0    # OpenAI style, over completion tokens
    presence_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0             # alternatives reported per generated token
    echo: bool = False                # also return the prompt (text and, with logprobs, its logprobs)
    ignore_eos: bool = False          # keep going past end-of-text tokens (benchmarks, fixed lengths)
    logit_bias: tuple[tuple[int, float], ...] = ()   # (token id, bias added to its logit)
    grammar: str | None = None        # constrain the output (infer.grammar: json_schema, regex, lark)

    def validate(self) -> None:
        checks = [
            (self.max_tokens >= 0, f"max_tokens must be >= 0, got {self.max_tokens}"),
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p}"),
            (self.repetition_penalty > 0, f"repetition_penalty must be > 0, got {self.repetition_penalty}"),
            (-2 <= self.frequency_penalty <= 2, f"frequency_penalty must be in [-2, 2], got {self.frequency_penalty}"),
            (-2 <= self.presence_penalty <= 2, f"presence_penalty must be in [-2, 2], got {self.presence_penalty}"),
            (0 <= self.top_logprobs <= 20, f"top_logprobs must be in [0, 20], got {self.top_logprobs}"),
            (all(isinstance(s, str) and s for s in self.stop), "stop strings must be non-empty strings"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalized(self) -> bool:
        return (self.repetition_penalty != 1.0 or self.frequency_penalty != 0.0
                or self.presence_penalty != 0.0)


def make_generator(seed: int | None) -> torch.Generator:
    # Unseeded requests still get a private generator, so they never perturb seeded ones.
    g = torch.Generator()
    g.manual_seed(seed if seed is not None else secrets.randbits(63))
    return g


class Penalties:
    """Per-request token statistics for the three penalties (allocated only when used)."""

    def __init__(self, params: SamplingParams, vocab_size: int, prompt_ids: list[int]):
        self.params = params
        self.seen = torch.zeros(vocab_size, dtype=torch.bool)
        self.seen[torch.tensor(prompt_ids, dtype=torch.long)] = True
        self.counts = torch.zeros(vocab_size, dtype=torch.float32)

    def add(self, token_id: int) -> None:
        self.seen[token_id] = True
        self.counts[token_id] += 1

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        p = self.params
        if p.repetition_penalty != 1.0:
            scaled = torch.where(logits > 0, logits / p.repetition_penalty, logits * p.repetition_penalty)
            logits = torch.where(self.seen, scaled, logits)
        if p.frequency_penalty or p.presence_penalty:
            logits = logits - p.frequency_penalty * self.counts - p.presence_penalty * (self.counts > 0).float()
        return logits


def filter_logits(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """Top-k / top-p / min-p on one row of (temperature-scaled) logits; removed tokens get -inf."""
    if p.top_k and p.top_k < logits.shape[-1]:
        kth = torch.topk(logits, p.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if p.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop_sorted = (probs.cumsum(-1) - probs) >= p.top_p
        logits = logits.masked_fill(drop_sorted.scatter(0, order, drop_sorted), float("-inf"))
    if p.min_p > 0:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < p.min_p * probs.max(), float("-inf"))
    return logits


def sample_batch(logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator],
                 penalties: list[Penalties | None]) -> list[int]:
    """Pick the next token for each row of float32 logits (B, V), each row with its own settings.

    Sampling uses the exponential race, argmax(p / E) with E ~ Exp(1) (from the row's own
    generator when it has a seed): an exact draw from p that keeps everything but the noise batched.
    """
    if all(p.greedy and not p.logit_bias for p in params) and not any(penalties):
        return logits.argmax(-1).tolist()
    logits = logits.clone()
    for i, (p, pen) in enumerate(zip(params, penalties)):
        if p.logit_bias:
            ids, biases = zip(*p.logit_bias)
            logits[i, list(ids)] += torch.tensor(biases, dtype=logits.dtype, device=logits.device)
        if pen is not None:
            logits[i] = pen.apply(logits[i])
    temps = torch.tensor([p.temperature or 1.0 for p in params], device=logits.device)
    scaled = logits / temps.unsqueeze(1)
    for i, p in enumerate(params):
        if not p.greedy and (p.top_k or p.top_p < 1.0 or p.min_p > 0):
            scaled[i] = filter_logits(scaled[i], p)
    noise = torch.ones_like(scaled)
    unseeded = []
    for i, (p, g) in enumerate(zip(params, generators)):
        if not p.greedy and p.seed is not None:
            noise[i].exponential_(generator=g)
        elif not p.greedy:
            unseeded.append(i)
    if unseeded:   # rows without a seed need no generator of their own: one draw serves them all
        noise[unseeded] = noise[unseeded].exponential_(generator=generators[unseeded[0]])
    # greedy rows keep noise 1, so the same argmax serves both kinds; a zero draw must not divide by 0
    noise.clamp_(min=torch.finfo(noise.dtype).tiny)
    return (scaled.softmax(-1) / noise).argmax(-1).tolist()
