"""The stages of a run, each reading and writing the run directory.

    data -> tokenizer -> tokens -> train -> evaluate -> report

A stage that finished is recorded in manifest.json with its wall time and the
hashes of its inputs and outputs, and is skipped next time unless forced; forcing
a stage also forgets every stage after it, since their inputs changed.
"""

from __future__ import annotations

import gzip
import json
import lzma
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lmforge import atomic
from lmforge.errors import UserError
from lmforge.recipe import Recipe
from lmforge.rundir import RunDir

ORDER = ["data", "tokenizer", "tokens", "train", "evaluate", "report"]


def _say(msg: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"lmforge: {msg}", flush=True)


def _begin(run: RunDir, stage: str, force: bool) -> bool:
    """True if the stage must run now."""
    if force:
        for later in ORDER[ORDER.index(stage):]:
            run.forget_stage(later)
        return True
    if run.stage_done(stage):
        _say(f"{stage}: already done ({run.manifest()['stages'][stage]['seconds']:.1f}s), skipping "
             f"(--force to redo)")
        return False
    return True


def _require(run: RunDir, stage: str, needed: str) -> None:
    if not run.stage_done(needed):
        raise UserError(f"{run.path}: stage '{stage}' needs '{needed}' first; "
                        f"run `lmforge prepare {run.path}` (or `lmforge run`)")


# ---------------------------------------------------------------------------- data
def data(run: RunDir, recipe: Recipe, force: bool = False, workers: int | None = None) -> None:
    if not _begin(run, "data", force):
        return
    from lmforge.data.pipeline import run_pipeline
    t0 = time.time()
    _say("data: collecting and cleaning documents")
    stats = run_pipeline(recipe.data, run.data, workers=workers, seed=recipe.seed)
    docs = run.data / "documents.jsonl"
    out = stats.get("output", {})
    run.record_stage("data", time.time() - t0, outputs=[docs, run.data / "data_card.md"],
                     documents=out.get("documents"), bytes=out.get("bytes"))
    _say(f"data: {out.get('documents', '?')} documents, {out.get('bytes', 0) / 1e6:.2f} MB "
         f"-> {run.data}")


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N) with 0 <= I < N."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected I/N, e.g. 0/8") from None
    if not (n >= 1 and 0 <= i < n):
        raise UserError(f"--shard {text}: need 0 <= I < N")
    return i, n


def shard_dir(run: RunDir, i: int, n: int) -> Path:
    return run.data / "shards" / f"{i:05d}-of-{n:05d}"


def data_shard(run: RunDir, recipe: Recipe, shard: tuple[int, int], workers: int | None = None) -> None:
    """Clean one shard of the inputs (one task of a Slurm array); `merge_data` joins them."""
    from lmforge.data.pipeline import run_pipeline
    out = shard_dir(run, *shard)
    stats = run_pipeline(recipe.data, out, workers=workers, shard=shard, seed=recipe.seed)
    _say(f"data shard {shard[0]}/{shard[1]}: {stats['output']['documents']} documents -> {out}")


def merge_data(run: RunDir, recipe: Recipe) -> None:
    """Join every shard of data/shards into data/ and record the data stage."""
    from lmforge.data.merge import merge_shards
    dirs = sorted((run.data / "shards").glob("*-of-*"))
    if not dirs:
        raise UserError(f"{run.data / 'shards'} holds no shards; run `lmforge prepare RUN --shard I/N` first")
    counts = {d.name.split("-of-")[1] for d in dirs}
    expected = int(counts.pop()) if len(counts) == 1 else 0
    if expected != len(dirs):
        raise UserError(f"found {len(dirs)} shard directories in {run.data / 'shards'} but expected "
                        f"{expected or 'one shard count'}; run the missing shards")
    t0 = time.time()
    stats = merge_shards(dirs, run.data, recipe.data)
    run.record_stage("data", time.time() - t0, outputs=[run.data / "documents.jsonl"],
                     documents=stats.get("output", {}).get("documents"), shards=len(dirs))


def tokenizer(run: RunDir, recipe: Recipe, force: bool = False) -> None:
    _require(run, "tokenizer", "data")
    if not _begin(run, "tokenizer", force):
        return
    from lmforge.tokenizer.train import train_tokenizer
    t0 = time.time()
    _say(f"tokenizer: training {recipe.tokenizer.kind}, vocab {recipe.tokenizer.vocab_size}")
    tok = train_tokenizer(recipe.tokenizer, run.data / "documents.jsonl", run.tokenizer)
    run.record_stage("tokenizer", time.time() - t0, inputs=[run.data / "documents.jsonl"],
                     outputs=[run.tokenizer / "tokenizer.json"], vocab_size=tok.get_vocab_size())


def tokens(run: RunDir, recipe: Recipe, force: bool = False, workers: int | None = None) -> None:
    _require(run, "tokens", "tokenizer")
    if not _begin(run, "tokens", force):
        return
    from lmforge.tokenizer.shards import encode_shards
    t0 = time.time()
    meta = encode_shards(run.tokenizer, run.data / "documents.jsonl", run.tokens,
                         val_fraction=recipe.tokenizer.val_fraction, seed=recipe.seed, workers=workers)
    run.record_stage("tokens", time.time() - t0, inputs=[run.tokenizer / "tokenizer.json"],
                     outputs=[run.tokens / "train.bin", run.tokens / "val.bin", run.tokens / "meta.json"],
                     train_tokens=meta["train_tokens"], val_tokens=meta["val_tokens"])
    _say(f"tokens: {meta['train_tokens']:,} train / {meta['val_tokens']:,} validation tokens")


def prepare(run: RunDir, recipe: Recipe, force: bool = False, workers: int | None = None) -> None:
    data(run, recipe, force, workers)
    tokenizer(run, recipe, force)
    tokens(run, recipe, force, workers)


# ---------------------------------------------------------------------------- train
def load_tokens(run: RunDir) -> tuple[np.ndarray, np.ndarray, dict]:
    meta_path = run.tokens / "meta.json"
    if not meta_path.is_file():
        raise UserError(f"{run.path}: no token shards (tokens/meta.json); run `lmforge prepare {run.path}`")
    meta = json.loads(meta_path.read_text())
    dtype = np.dtype(meta["dtype"])
    train = np.memmap(run.tokens / "train.bin", dtype=dtype, mode="r")
    val = np.memmap(run.tokens / "val.bin", dtype=dtype, mode="r")
    return train, val, meta


def model_config_for(recipe: Recipe, vocab_size: int):
    cfg = recipe.model.resolved()
    return replace(cfg, vocab_size=cfg.vocab_size or vocab_size)


def train(run: RunDir, recipe: Recipe, force: bool = False, resume: bool = False) -> None:
    from lmforge.models.transformer import Transformer
    from lmforge.train import checkpoint, distributed
    from lmforge.train.batches import TokenBatches, fixed_windows
    from lmforge.train.loop import Trainer, truncate_metrics

    _require(run, "train", "tokens")
    has_checkpoints = bool(checkpoint.list_steps(run.checkpoints))
    if not resume and not force and not run.stage_done("train") and has_checkpoints:
        raise UserError(f"{run.path} holds an interrupted training run; pass --resume to continue it "
                        f"or --force to start over")
    if not resume and not _begin(run, "train", force):
        return
    if resume:
        run.forget_stage("train")
    if force and not resume:
        import shutil
        shutil.rmtree(run.checkpoints, ignore_errors=True)
        run.metrics.unlink(missing_ok=True)

    tc = recipe.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    info = distributed.setup()
    try:
        # The recipe's global batch (batch_size x grad_accum) holds at any world size: ranks
        # take over accumulation steps, so one recipe and its checkpoints work on 1 or N processes.
        if tc.grad_accum % info.world:
            raise UserError(f"train.grad_accum ({tc.grad_accum}) must be divisible by the number of "
                            f"processes ({info.world}): the ranks share the recipe's accumulation steps; "
                            f"use --set train.grad_accum={info.world * max(1, tc.grad_accum // info.world)}")
        tc = replace(tc, grad_accum=tc.grad_accum // info.world)
        train_tokens, val_tokens, meta = load_tokens(run)
        mcfg = model_config_for(recipe, meta["vocab_size"])
        seq_len = tc.seq_len or mcfg.max_seq_len
        if seq_len > mcfg.max_seq_len:
            raise UserError(f"train.seq_len ({seq_len}) exceeds model.max_seq_len ({mcfg.max_seq_len})")
        for name, arr in (("training", train_tokens), ("validation", val_tokens)):
            if len(arr) < seq_len + 2:
                raise UserError(f"the {name} split has {len(arr)} tokens, fewer than one window of "
                                f"{seq_len}; add data or lower train.seq_len")
        torch.manual_seed(recipe.seed)
        model = Transformer(mcfg)
        batches = TokenBatches(train_tokens, seq_len, tc.batch_size, recipe.seed, tc.grad_accum,
                               rank=info.rank, world=info.world)
        val_windows = fixed_windows(val_tokens, seq_len, tc.eval_batches * tc.batch_size, tc.batch_size,
                                    seed=recipe.seed)
        trainer = Trainer(model, tc, batches, val_windows, seed=recipe.seed, ckpt_dir=run.checkpoints,
                          log=run.log_metrics, dist=info)
        if resume:
            step = trainer.resume()
            if step is None:
                _say("train: no usable checkpoint, starting from scratch")
                if info.is_main:
                    run.metrics.unlink(missing_ok=True)
            else:
                _say(f"train: resuming at step {step}")
                if info.is_main:
                    truncate_metrics(run.metrics, step)
        n_params = sum(p.numel() for p in model.parameters())
        _say(f"train: {n_params / 1e6:.2f}M parameters, {info.world} process(es), "
             f"{'%.0f s budget' % tc.time_budget_s if tc.time_budget_s else '%d steps' % tc.max_steps}")
        t0 = time.time()
        state = trainer.fit()
        if info.is_main:
            run.record_stage("train", time.time() - t0, inputs=[run.tokens / "train.bin"],
                             steps=state.step, tokens=state.tokens, train_seconds=round(state.train_seconds, 2),
                             best_val_loss=state.best_val_loss, parameters=n_params, world_size=info.world)
            _say(f"train: {state.step} steps, best val loss {state.best_val_loss:.4f}")
    finally:
        distributed.teardown(info)


# ---------------------------------------------------------------------------- evaluate
def compression_bits_per_byte(text: bytes) -> dict:
    """gzip -9 and xz -9 on the same text: the baseline a language model must beat."""
    n = max(len(text), 1)
    return {"gzip_bits_per_byte": round(8 * len(gzip.compress(text, 9)) / n, 4),
            "xz_bits_per_byte": round(8 * len(lzma.compress(text, preset=9)) / n, 4)}


def evaluate(run: RunDir, recipe: Recipe, force: bool = False) -> dict:
    from lmforge.eval.likelihood import score_token_stream
    from lmforge.infer.engine import Engine
    from lmforge.train.checkpoint import load_model

    _require(run, "evaluate", "train")
    out_path = run.eval / "pretrain.json"
    if not _begin(run, "evaluate", force) and out_path.exists():
        return json.loads(out_path.read_text())
    t0 = time.time()
    _, val_tokens, meta = load_tokens(run)
    model = load_model(run.path)
    ec = recipe.eval
    scored = val_tokens if not ec.max_val_tokens else val_tokens[:ec.max_val_tokens]
    window = recipe.train.seq_len or model.cfg.max_seq_len
    nll, n = score_token_stream(model, scored, window=window, batch_size=16)
    val_bytes = meta["val_bytes"] if not ec.max_val_tokens else meta["val_bytes"] * len(scored) / len(val_tokens)
    val_text = (run.tokens / "val.txt").read_bytes()
    result = {"val_loss": round(nll / n, 5), "token_perplexity": round(math.exp(nll / n), 3),
              "bits_per_byte": round(nll / math.log(2) / val_bytes, 4),
              "scored_tokens": n, "val_bytes": int(val_bytes),
              **compression_bits_per_byte(val_text)}
    engine = Engine(model, _tokenizer(run), threads=None)
    try:
        result["samples"] = [
            {"prompt": p, "completion": engine.generate(p, max_tokens=ec.sample_tokens, temperature=ec.temperature,
                                                        top_k=ec.top_k, seed=recipe.seed + i).text}
            for i, p in enumerate(ec.sample_prompts[:ec.samples])]
    finally:
        engine.close()
    atomic.write_json(out_path, result)
    run.record_stage("evaluate", time.time() - t0, outputs=[out_path], bits_per_byte=result["bits_per_byte"])
    beat = "beats" if result["bits_per_byte"] < result["gzip_bits_per_byte"] else "does NOT beat"
    _say(f"evaluate: val loss {result['val_loss']:.3f}, {result['bits_per_byte']:.3f} bits/byte "
         f"({beat} gzip -9 at {result['gzip_bits_per_byte']:.3f}, xz -9 {result['xz_bits_per_byte']:.3f})")
    return result


def _tokenizer(run: RunDir):
    from lmforge.tokenizer.load import load_tokenizer
    return load_tokenizer(run.tokenizer)


# ---------------------------------------------------------------------------- report
def report(run: RunDir, recipe: Recipe, force: bool = True) -> None:
    from lmforge.report.html import write_report
    from lmforge.report.model_card import write_model_card
    t0 = time.time()
    write_model_card(run, recipe)
    write_report(run, recipe)
    run.record_stage("report", time.time() - t0, outputs=[run.model_card, run.report])


def run_all(run: RunDir, recipe: Recipe, force: bool = False, workers: int | None = None) -> None:
    prepare(run, recipe, force, workers)
    train(run, recipe, force)
    evaluate(run, recipe, force)
    report(run, recipe)
