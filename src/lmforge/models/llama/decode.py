"""The `llama` family's decode kernel: the engine's forward passes with as few operator calls as possible.

A decode step on a small model costs little arithmetic but many tiny operator
calls, each with a fixed overhead (on a small CPU 3-60 us each, more than the
arithmetic; a `nn.Module` call adds ~20 us on top). This forward computes what
`Transformer.forward` does, for one new token per sequence (a decode step) or
for a chunk of one prompt (prefill), but:
  - calls functional ops on weights gathered once, never modules;
  - projects queries, keys and values with one matrix product, and the SwiGLU
    gate and up projections with one; the projection weights of the model it is
    given become views into the fused matrices, so no memory is doubled (the engine
    hands it a private copy of the model, never the one being trained);
  - rotates queries and keys together, in place, with rotate-half written as a
    product with a fixed signed permutation (exact: each output is one input, +/-);
  - writes the new keys and values into the slot cache with one copy per layer;
  - adds the output projections to the residual inside the matrix product (addmm);
  - with more than one torch thread, splits a single sequence's products over two
    threads by output rows (halves_by_rows): bit-identical, and more memory
    bandwidth for a step that is bound by reading the weights.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.infer.cache import SlotCache
from lmforge.models.llama.model import GELU_APPROXIMATION, Transformer
from lmforge.models.llama.ngram import chunk_windows


def decode_layout(weight: torch.Tensor) -> torch.Tensor:
    """The layout in which multiplying a few rows by `weight` (out, in) runs fastest.

    Measured on CPU in float32 with one thread: matrices at least as tall as they are
    wide (q/k/v, gate/up, the vocabulary head) run 10-30% faster stored column-major,
    wide ones (the MLP's down projection) faster row-major. bfloat16 kernels want rows
    (there column-major is 4-10x slower).
    """
    tall = weight.shape[0] >= weight.shape[1]
    if weight.device.type == "cpu" and weight.dtype == torch.float32 and tall:
        return weight.t().contiguous().t()
    return weight.contiguous()


def halves_by_rows(weight: torch.Tensor) -> torch.Tensor | None:
    """weight (out, in) as its two halves of output rows, shaped (2, in, out/2): a view, no copy.

    One row times a matrix runs on one thread whatever torch's thread setting, and on this
    kind of CPU one thread cannot read memory as fast as two (~14 against ~20 GB/s). A
    batched product over the two halves runs one half on each thread, and each output is
    the very same dot product as before, so the result is bit-identical.
    """
    out = weight.shape[0]
    return weight.t().unflatten(1, (2, out // 2)).permute(1, 0, 2) if out % 2 == 0 else None


class _Projection:
    """A Linear's weight (in decode layout) and bias, applied to N rows of activations.
    `split` asks for the two-thread product of a single row (see halves_by_rows)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias, self.halves = weight, bias, halves_by_rows(weight)

    def __call__(self, h: torch.Tensor, split: bool = False) -> torch.Tensor:
        if split and self.halves is not None:
            y = torch.bmm(h.expand(2, 1, -1), self.halves).view(1, -1)
            return y if self.bias is None else y + self.bias
        return F.linear(h, self.weight, self.bias)

    def add_to(self, x: torch.Tensor, h: torch.Tensor, split: bool = False) -> torch.Tensor:
        """x + self(h): one product with the addition inside it when there is no bias."""
        if self.bias is not None:
            return x + self(h, split)
        if split and self.halves is not None:
            halves = x.view(1, 2, -1).transpose(0, 1)
            return torch.baddbmm(halves, h.expand(2, 1, -1), self.halves).view(1, -1)
        return torch.addmm(x, h, self.weight.t())


# int8 weights pay where reading the weights dominates: from about this many weights per matrix
# (measured, 2 threads, one row: 512x1536 24 us against 40 us in fp32, 512x4096 33 against 181,
# but 128x384 19 against 7: fbgemm's fixed cost)
INT8_MIN_WEIGHTS = 1 << 19


class _Int8Projection:
    """A projection with int8 weights (per-output-row scales) and activations quantized on the fly
    (fbgemm's dynamic linear): 4x fewer weight bytes per product. Built from, and rebuilt from,
    the float projection it stands for."""

    def __init__(self, source: _Projection):
        self.source = source
        w = source.weight.detach().float().contiguous()
        scales = (w.abs().amax(dim=1) / 127).clamp_min(1e-12).double()
        with warnings.catch_warnings():   # torch marks its quantized tensors deprecated; fbgemm's kernel stays
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(w, scales, torch.zeros_like(scales, dtype=torch.long), 0, torch.qint8)
        bias = None if source.bias is None else source.bias.detach().float()
        self.packed = torch.ops.quantized.linear_prepack(q, bias)

    def __call__(self, h: torch.Tensor, split: bool = False) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(h, self.packed, True)

    def add_to(self, x: torch.Tensor, h: torch.Tensor, split: bool = False) -> torch.Tensor:
        return x + self(h)


def _float(p: _Projection | _Int8Projection) -> _Projection:
    return p.source if isinstance(p, _Int8Projection) else p


def _fuse(linears: list[nn.Linear]) -> _Projection:
    """Stack the weights (and biases) of several Linears; each keeps a view of its rows."""
    weight = decode_layout(torch.cat([lin.weight.detach() for lin in linears]))
    bias = torch.cat([lin.bias.detach() for lin in linears]) if linears[0].bias is not None else None
    start = 0
    for lin in linears:
        n = lin.out_features
        lin.weight = nn.Parameter(weight[start:start + n], requires_grad=False)
        if bias is not None:
            lin.bias = nn.Parameter(bias[start:start + n], requires_grad=False)
        start += n
    return _Projection(weight, bias)


def _relayout(lin: nn.Linear) -> _Projection:
    lin.weight = nn.Parameter(decode_layout(lin.weight.detach()), requires_grad=False)
    return _Projection(lin.weight, lin.bias)


def _functional_norm(norm: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    # the tensors are captured once: reading a module's parameters costs a __getattr__ each time
    shape, weight, eps = norm.normalized_shape, norm.weight, norm.eps
    if isinstance(norm, nn.RMSNorm):
        return lambda x: F.rms_norm(x, shape, weight, eps)
    bias = norm.bias
    return lambda x: F.layer_norm(x, shape, weight, bias, eps)


def rotate_half_matrix(head_dim: int, dtype: torch.dtype, device) -> torch.Tensor:
    """P with x @ P == rotate_half(x) == cat(-x[half:], x[:half])."""
    half = head_dim // 2
    p = torch.zeros(head_dim, head_dim, dtype=dtype, device=device)
    idx = torch.arange(half, device=device)
    p[idx + half, idx] = -1
    p[idx, idx + half] = 1
    return p


@dataclass
class _Layer:
    norm1: Callable
    qkv: _Projection
    q_norm: Callable | None
    k_norm: Callable | None
    out: _Projection
    norm2: Callable
    up: _Projection     # gate and up fused for SwiGLU
    down: _Projection


class FusedDecoder:
    """Rewrites `model`'s projection weights into its own layout: give it a model no one trains."""

    def __init__(self, model: Transformer):
        self.model = model
        cfg = self.cfg = model.cfg
        self.context = cfg.max_seq_len
        self.n_q, self.n_kv = cfg.n_head, cfg.kv_heads
        self.layers = []
        for block in model.model.layers:
            attn, mlp = block.self_attn, block.mlp
            up = [mlp.gate_proj, mlp.up_proj] if cfg.mlp == "swiglu" else [mlp.up_proj]
            self.layers.append(_Layer(
                norm1=_functional_norm(block.input_layernorm),
                qkv=_fuse([attn.q_proj, attn.k_proj, attn.v_proj]),
                q_norm=_functional_norm(attn.q_norm) if cfg.qk_norm else None,
                k_norm=_functional_norm(attn.k_norm) if cfg.qk_norm else None,
                out=_relayout(attn.o_proj),
                norm2=_functional_norm(block.post_attention_layernorm),
                up=_fuse(up),
                down=_relayout(mlp.down_proj)))
        self.final_norm = _functional_norm(model.model.norm)
        # a tied head shares the embedding, whose lookups want rows
        self.head = (_Projection(model.lm_head.weight, model.lm_head.bias) if cfg.tie_embeddings
                     else _relayout(model.lm_head))
        self.embed = model.model.embed_tokens.weight
        self.ngrams = model.model.embed_ngrams if cfg.ngram_orders else None
        self.embed_positions = model.model.embed_positions.weight if cfg.positions == "learned" else None
        param = next(model.parameters())
        self.rotate = (rotate_half_matrix(cfg.head_dim, param.dtype, param.device)
                       if model.rotary is not None else None)
        self._rows: dict[int, torch.Tensor] = {}

    def inputs(self, tokens: list[int], start: int, end: int) -> torch.Tensor:
        """The input rows for positions start..end-1 of the sequence `tokens`: their ids (N,),
        or for a model with n-gram embeddings each id with the ones before it (N, window)."""
        if self.ngrams is None:
            return torch.tensor(tokens[start:end], device=self.embed.device)
        return chunk_windows(tokens, start, end, self.ngrams.width, self.ngrams.pad).to(self.embed.device)

    @property
    def window(self) -> int:
        """How many of a sequence's last tokens the input row of its next position needs."""
        return 1 if self.ngrams is None else self.ngrams.width

    def last_inputs(self, tails: list[list[int]]) -> torch.Tensor:
        """The input rows of a decode step, one per sequence, from its last `window` tokens."""
        if self.ngrams is None:
            return torch.tensor([t[-1] for t in tails], device=self.embed.device)
        return torch.cat([self.inputs(t, len(t) - 1, len(t)) for t in tails])

    def _projections(self) -> list:
        return [p for layer in self.layers for p in (layer.qkv, layer.out, layer.up, layer.down)] + [self.head]

    def _set_projections(self, make) -> None:
        for layer in self.layers:
            layer.qkv, layer.out, layer.up, layer.down = map(make, (layer.qkv, layer.out, layer.up, layer.down))
        self.head = make(self.head)

    def int8_weight_count(self) -> int:
        """How many weights `quantize_int8` turns into int8."""
        return sum(n for n in (_float(p).weight.numel() for p in self._projections()) if n >= INT8_MIN_WEIGHTS)

    def int8_unavailable(self) -> str | None:
        """Why this model cannot decode with int8 weights, or None."""
        if self.ngrams is not None or self.embed.device.type != "cpu":
            return "int8 weights are for CPU decoding of models without n-gram embeddings"
        return None

    def quantize_int8(self) -> None:
        """Use int8 weights for the matrices large enough to gain from them (again after the float
        weights changed: each int8 projection is rebuilt from its float one)."""
        if self.int8_unavailable():
            raise ValueError(self.int8_unavailable())

        def int8(p):
            p = _float(p)
            return _Int8Projection(p) if p.weight.numel() >= INT8_MIN_WEIGHTS else p
        self._set_projections(int8)

    def use_float(self) -> None:
        """Back to the float weights (undoes `quantize_int8`)."""
        self._set_projections(_float)

    def make_cache(self, rows: int) -> SlotCache:
        param = next(self.model.parameters())
        return SlotCache(self.cfg.n_layer, self.cfg.kv_heads, self.cfg.head_dim, rows, self.context,
                         param.dtype, param.device)

    def rows(self, batch: int, device) -> torch.Tensor:
        if batch not in self._rows:
            self._rows[batch] = torch.arange(batch, device=device)
        return self._rows[batch]

    def decode(self, ids: torch.Tensor, cached: list[int], cache: SlotCache) -> torch.Tensor:
        """One decode step. ids (see `inputs`) for cache rows 0..B-1, whose sequences hold
        `cached` tokens each; returns logits (B, vocab)."""
        split = ids.shape[0] == 1 and ids.is_cpu and torch.get_num_threads() > 1
        positions, attend = self._decode_attention(cached, cache)
        hidden = self._layers(ids, positions, attend, split)
        return self.logits(hidden, split)

    def logits(self, hidden: torch.Tensor, split: bool = False) -> torch.Tensor:
        """The model's logits of final-normed hidden states."""
        return self.model.soft_cap(self.head(hidden, split))

    def prefill(self, ids: torch.Tensor, start: int, cache: SlotCache) -> torch.Tensor:
        """Tokens start..start+T-1 of one prompt into the cache's prefill row; returns the
        final-normed hidden states (T, d_model)."""
        positions, attend = self._prefill_attention(ids.shape[0], start, cache, ids.device)
        return self._layers(ids, positions, attend)

    def decode_and_prefill(self, ids: torch.Tensor, cached: list[int], prompt_ids: torch.Tensor,
                           start: int, cache: SlotCache) -> torch.Tensor:
        """A decode step and a prefill chunk in one pass: each weight matrix is read from memory
        once for both. Returns the hidden states of the B decoding rows, then of the T prompt tokens."""
        B, T = ids.shape[0], prompt_ids.shape[0]
        positions, decode = self._decode_attention(cached, cache)
        prompt_positions, prefill = self._prefill_attention(T, start, cache, ids.device)

        def attend(i: int, heads: torch.Tensor) -> torch.Tensor:
            return torch.cat([decode(i, heads[:B]).reshape(B, -1), prefill(i, heads[B:]).reshape(T, -1)])

        return self._layers(torch.cat([ids, prompt_ids]), torch.cat([positions, prompt_positions]), attend)

    def _decode_attention(self, cached: list[int], cache: SlotCache
                          ) -> tuple[torch.Tensor, Callable[[int, torch.Tensor], torch.Tensor]]:
        B, nq, gqa = len(cached), self.n_q, self.n_kv != self.n_q
        device = self.embed.device
        positions = torch.tensor(cached, device=device)
        span = max(cached) + 1
        # one row needs no mask: it attends over exactly its own keys
        mask = None if B == 1 else (torch.arange(span, device=device) <= positions.unsqueeze(1))[:, None, None, :]
        rows = self.rows(B, device)

        def attend(i: int, heads: torch.Tensor) -> torch.Tensor:
            cache.kv[i][rows, :, positions] = heads[:, nq:]
            return F.scaled_dot_product_attention(
                heads[:, :nq].unsqueeze(2), cache.k[i][:B, :, :span], cache.v[i][:B, :, :span],
                attn_mask=mask, enable_gqa=gqa)

        return positions, attend

    def _prefill_attention(self, T: int, start: int, cache: SlotCache, device
                           ) -> tuple[torch.Tensor, Callable[[int, torch.Tensor], torch.Tensor]]:
        nq, gqa = self.n_q, self.n_kv != self.n_q
        row, end = cache.prefill_row, start + T
        # a chunk after earlier ones attends to all of them: query t sits at position start + t
        mask = None if start == 0 else torch.ones(T, end, dtype=torch.bool, device=device).tril(start)

        def attend(i: int, heads: torch.Tensor) -> torch.Tensor:
            cache.kv[i][row, :, start:end] = heads[:, nq:].transpose(0, 1)
            y = F.scaled_dot_product_attention(
                heads[:, :nq].transpose(0, 1).unsqueeze(0), cache.k[i][row:row + 1, :, :end],
                cache.v[i][row:row + 1, :, :end], attn_mask=mask, is_causal=mask is None and T > 1,
                enable_gqa=gqa)
            return y[0].transpose(0, 1)

        return torch.arange(start, end, device=device), attend

    def _layers(self, ids: torch.Tensor, positions: torch.Tensor,
                attend: Callable[[int, torch.Tensor], torch.Tensor], split: bool = False) -> torch.Tensor:
        """The blocks over N token rows; `attend(layer, heads)` stores that layer's keys and
        values and returns the attention output, (N, n_head, 1 or N, head_dim) in any layout
        that views as (N, n_head * head_dim). `split`: one row, products on two threads."""
        cfg, m = self.cfg, self.model
        N, hd, nq, nkv = ids.shape[0], cfg.head_dim, self.n_q, self.n_kv
        if self.ngrams is None:
            x = F.embedding(ids, self.embed)
        else:
            x = F.embedding(ids[:, -1], self.embed) + self.ngrams(ids)
        if self.embed_positions is not None:
            x = x + F.embedding(positions, self.embed_positions)
        if self.rotate is not None:
            cos, sin = m.rotary.cos[positions, None], m.rotary.sin[positions, None]
        for i, layer in enumerate(self.layers):
            heads = layer.qkv(layer.norm1(x), split).view(N, nq + 2 * nkv, hd)
            if layer.q_norm is not None:
                heads[:, :nq] = layer.q_norm(heads[:, :nq])
                heads[:, nq:nq + nkv] = layer.k_norm(heads[:, nq:nq + nkv])
            if self.rotate is not None:
                qk = heads[:, :nq + nkv]
                rotated = qk @ self.rotate
                qk.mul_(cos).addcmul_(rotated, sin)
            x = layer.out.add_to(x, attend(i, heads).reshape(N, nq * hd), split)
            h = layer.up(layer.norm2(x), split)
            if cfg.mlp == "swiglu":
                gate, up = h.chunk(2, dim=-1)
                h = F.silu(gate).mul_(up)
            elif cfg.mlp == "relu2":
                h = F.relu(h).square_()
            else:
                h = F.gelu(h, approximate=GELU_APPROXIMATION[cfg.mlp])
            x = layer.down.add_to(x, h, split)
        return self.final_norm(x)
