"""`--dtype auto` for decoding: int8 weights where this machine decodes faster with them and the
model loses (almost) nothing, float32 weights everywhere else.

int8 weights (the llama kernel's fbgemm projections) read 4x fewer bytes per token. That pays
where a decode step is bound by reading its weights: 2.1x the float32 speed for a 29.5M model
at one thread on an AVX-512 EPYC, but 0.95x for a 5.3M one, whose matrices fit in cache and
pay fbgemm's fixed cost per product (docs/deploy.md). And rounding the weights changes the
model a little. So `auto` measures both on the model itself, at the engine's thread count:

1. where int8 cannot apply (another family, a GPU, n-gram embeddings) or would cover fewer than
   MIN_INT8_WEIGHTS weights (the size below which it measured no faster), float32, unmeasured;
2. otherwise it decodes the same greedy tokens with each and scores the same text with each:
   the run's validation tokens, or where the run has none, a file of Python's standard library;
3. int8 is kept when it is at least MIN_SPEEDUP faster and raises the mean loss per scored
   token by at most MAX_LOSS_COST (relative), else the engine goes back to float32.

The decision is cached per machine, thread count, weights file and version of lmforge's code
(decode.json in lmforge's cache), so a restarted server decides without measuring.
"""

from __future__ import annotations

import inspect
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from lmforge.cache import code_fingerprint, machine_key, read_table, write_entry
from lmforge.tokenizer.shards import read_shards

MIN_INT8_WEIGHTS = 1 << 22
MIN_SPEEDUP = 1.10
MAX_LOSS_COST = 0.01
TABLE = "decode.json"
DECODE_TOKENS = 48           # timed greedy tokens per setting (after a short warm-up)
SCORED_WINDOWS = 4           # windows of the reference text scored per setting
WINDOW = 256


@dataclass
class WeightsChoice:
    weights: str                  # int8 | float32
    reason: str
    float32_tokens_per_s: float | None = None
    int8_tokens_per_s: float | None = None
    loss_cost: float | None = None       # relative rise of the mean loss per token with int8
    source: str = "measured"             # measured | cache | rule


def keeps_int8(float_tps: float, int8_tps: float, loss_cost: float) -> bool:
    return int8_tps >= MIN_SPEEDUP * float_tps and loss_cost <= MAX_LOSS_COST


def reference_tokens(engine, run: Path | None) -> list[int]:
    """Tokens to time and score on: the run's validation split where it has one (the run
    directory or a checkpoint folder up to two levels inside it), else a stdlib module's source."""
    for folder in ([run, *list(run.resolve().parents)[:2]] if run is not None else []):
        if (folder / "tokens" / "meta.json").is_file():
            _, val, _ = read_shards(folder / "tokens")
            return [int(t) for t in val[:SCORED_WINDOWS * WINDOW]]
    return engine.encode(inspect.getsource(textwrap))[:SCORED_WINDOWS * WINDOW]


def _decode_speed(engine, prompt: list[int]) -> float:
    engine.generate(prompt, max_tokens=4, temperature=0.0, ignore_eos=True)         # warm-up
    start = time.perf_counter()
    result = engine.generate(prompt, max_tokens=DECODE_TOKENS, temperature=0.0, ignore_eos=True)
    return result.completion_tokens / (time.perf_counter() - start)     # fewer where the context ends


def _mean_loss(engine, tokens: list[int]) -> float:
    window = min(WINDOW, engine.context)
    losses = []
    for start in range(0, len(tokens) - 1, window):
        chunk = tokens[start:start + window]
        if len(chunk) > 1:
            losses += [-lp for lp in engine.prompt_logprobs(chunk)[1:]]
    return sum(losses) / len(losses)


def measure(engine, tokens: list[int]) -> WeightsChoice:
    """Time and score the engine with float32 and with int8 weights; it is left on int8."""
    prompt = tokens[:min(32, engine.context // 4)]
    float_tps, float_loss = _decode_speed(engine, prompt), _mean_loss(engine, tokens)
    engine.use_int8(True)
    int8_tps, int8_loss = _decode_speed(engine, prompt), _mean_loss(engine, tokens)
    cost = (int8_loss - float_loss) / max(float_loss, 1e-9)
    keep = keeps_int8(float_tps, int8_tps, cost)
    verdict = "kept" if keep else "not kept"
    return WeightsChoice("int8" if keep else "float32",
                         f"int8 {int8_tps / float_tps:.2f}x the float32 speed, loss {cost:+.2%}: {verdict}",
                         round(float_tps, 1), round(int8_tps, 1), round(cost, 5))


def rule(engine) -> WeightsChoice | None:
    """float32 without measuring where int8 cannot apply or pay; None where it is to be measured."""
    decoder = engine.decoder
    unavailable = ("int8 weights are for the llama kernel" if not hasattr(decoder, "quantize_int8")
                   else decoder.int8_unavailable())
    if unavailable:
        return WeightsChoice("float32", unavailable, source="rule")
    count = decoder.int8_weight_count()
    if count < MIN_INT8_WEIGHTS:
        return WeightsChoice("float32", f"only {count:,} weights would be int8 (int8 pays from about "
                             f"{MIN_INT8_WEIGHTS:,})", source="rule")
    return None


def decide(engine, reference: Callable[[], list[int]], key: str | None = None) -> WeightsChoice:
    """The rule, else the cached decision under `key`, else a measurement on `reference()`
    (cached under `key`); the engine is left decoding with the chosen weights."""
    choice = rule(engine)
    cached = read_table(TABLE).get(key) if choice is None and key is not None else None
    if cached is not None:
        choice = WeightsChoice(**{**cached, "source": "cache"})
    elif choice is None:
        choice = measure(engine, reference())
        if key is not None:
            write_entry(TABLE, key, asdict(choice))
    engine.use_int8(choice.weights == "int8")
    engine.weights_choice = choice
    return choice


def choose_weights(engine, checkpoint: Path, run: Path | None = None) -> WeightsChoice:
    """`decide` for an engine loaded from `checkpoint`, cached per machine, threads, weights files
    and code; `run` is where to look for validation tokens."""
    files = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(checkpoint.glob("*.safetensors")))
    key = machine_key("decode-weights", torch.__version__, code_fingerprint(), checkpoint.resolve(), files)
    return decide(engine, lambda: reference_tokens(engine, run), key)
