"""ONNX export of a decoder with its key/value cache as inputs and outputs, for ONNX Runtime.

    lmforge export RUN --format onnx [--quantize int8]

The graph takes `input_ids` (batch, new tokens) and, per layer, `past_key.N` / `past_value.N`
(batch, kv_heads, past tokens, head_dim), and returns `logits` and `present_key.N` /
`present_value.N` with the new tokens appended: feed the presents back as the next step's
pasts and ONNX Runtime decodes incrementally (start with pasts of length 0). Every axis but
the head sizes is dynamic. `onnx_config.json` beside the model lists names, sizes and stop ids.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from lmforge import atomic
from lmforge.errors import UserError
from lmforge.models.io import load_model
from lmforge.export import exportable_checkpoint, refuse_existing
from lmforge.tokenizer.load import copy_tokenizer_files, find_tokenizer_dir, load_tokenizer
from lmforge.tokenizer.specials import STOP_TOKENS


class _PastCache:
    """The model's cache interface over the graph's past inputs; collects the presents."""

    def __init__(self, past: list[tuple[torch.Tensor, torch.Tensor]]):
        self.past, self.present = past, []
        self.length = past[0][0].shape[2]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        k = torch.cat([self.past[layer][0], k], dim=2)
        v = torch.cat([self.past[layer][1], v], dim=2)
        self.present += [k, v]
        return k, v

    def advance(self, n: int) -> None:
        pass


class DecoderWithPast(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, *past: torch.Tensor):
        cache = _PastCache(list(zip(past[0::2], past[1::2])))
        T, S = input_ids.shape[1], cache.length + input_ids.shape[1]
        # new token t (at position past + t) sees every past token and the new ones up to itself
        mask = torch.arange(S, device=input_ids.device)[None, :] <= \
            (torch.arange(T, device=input_ids.device)[:, None] + cache.length)
        logits = self.model(input_ids, mask=mask, cache=cache)
        return (logits, *cache.present)


@contextlib.contextmanager
def _quiet():
    """The exporter's progress lines and warnings (about packages lmforge does not use) stay out
    of the user's terminal; errors still surface."""
    loggers = [logging.getLogger("torch.onnx"), logging.getLogger()]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def io_names(n_layer: int) -> tuple[list[str], list[str]]:
    past = [f"past_{kind}.{i}" for i in range(n_layer) for kind in ("key", "value")]
    present = [f"present_{kind}.{i}" for i in range(n_layer) for kind in ("key", "value")]
    return ["input_ids", *past], ["logits", *present]


def export_onnx(run: str | Path, out: str | Path, force: bool = False, quantize: str | None = None) -> Path:
    run, out = Path(run), Path(out)
    ckpt = exportable_checkpoint(run)
    model = load_model(ckpt)
    cfg = model.cfg
    if cfg.arch != "llama":
        raise UserError(f"ONNX export is for decoders (arch 'llama'); this run's arch is '{cfg.arch}'")
    if cfg.ngram_orders:
        raise UserError("model.ngram_orders: a model with n-gram embeddings needs each token's predecessors, "
                        "which the ONNX graph's cache does not carry; train without them to export to ONNX")
    refuse_existing(out, force)
    inputs, outputs = io_names(cfg.n_layer)
    example_ids = torch.randint(0, cfg.vocab_size, (2, 3))
    example_past = [torch.zeros(2, cfg.kv_heads, 4, cfg.head_dim) for _ in range(2 * cfg.n_layer)]
    batch, new, past_len = torch.export.Dim("batch"), torch.export.Dim("new_tokens"), torch.export.Dim("past")
    shapes = ({0: batch, 1: new}, tuple({0: batch, 2: past_len} for _ in example_past))   # (ids, *past)
    tok_dir = find_tokenizer_dir(run, ckpt)
    tok = load_tokenizer(tok_dir)
    with atomic.atomic_dir(out) as tmp:
        with _quiet():
            program = torch.onnx.export(DecoderWithPast(model).eval(), (example_ids, *example_past),
                                        input_names=inputs, output_names=outputs, dynamic_shapes=shapes,
                                        dynamo=True, verbose=False)
        program.save(str(tmp / "model.onnx"))
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic
            with _quiet():
                quantize_dynamic(str(tmp / "model.onnx"), str(tmp / "model.int8.onnx"), weight_type=QuantType.QInt8)
        copy_tokenizer_files(tok_dir, tmp)
        stops = [i for i in map(tok.token_to_id, STOP_TOKENS) if i is not None]
        (tmp / "onnx_config.json").write_text(json.dumps({
            "inputs": inputs, "outputs": outputs, "n_layer": cfg.n_layer, "kv_heads": cfg.kv_heads,
            "head_dim": cfg.head_dim, "vocab_size": cfg.vocab_size, "context": cfg.max_seq_len,
            "eos_token_ids": stops, "int8": quantize == "int8"}, indent=2) + "\n")
    return out
