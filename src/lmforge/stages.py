"""The stages of a run, each reading and writing the run directory.

    data -> tokenizer -> tokens -> train -> evaluate -> governance -> report

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

import torch

from lmforge import atomic
from lmforge.errors import UserError
from lmforge.recipe import Recipe
from lmforge.rundir import RunDir

ORDER = ["data", "tokenizer", "tokens", "train", "evaluate", "governance", "report"]


def _task(recipe: Recipe):
    from lmforge.finetune import task_for
    return task_for(recipe)


def say(msg: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"lmforge: {msg}", flush=True)


def _begin(run: RunDir, stage: str, force: bool) -> bool:
    """True if the stage must run now."""
    if force:
        for later in ORDER[ORDER.index(stage):]:
            run.forget_stage(later)
        return True
    if run.stage_done(stage):
        say(f"{stage}: already done ({run.manifest()['stages'][stage]['seconds']:.1f}s), skipping "
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
    task = _task(recipe)
    if task is not None:
        return task.data(run, recipe)
    from lmforge.data.pipeline import run_pipeline
    t0 = time.time()
    say("data: collecting and cleaning documents")
    stats = run_pipeline(recipe.data, run.data, workers=workers, seed=recipe.seed)
    docs = run.data / "documents.jsonl"
    out = stats.get("output", {})
    run.record_stage("data", time.time() - t0, outputs=[docs, run.data / "data_card.md"],
                     documents=out.get("documents"), bytes=out.get("bytes"))
    say(f"data: {out.get('documents', '?')} documents, {out.get('bytes', 0) / 1e6:.2f} MB "
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
    say(f"data shard {shard[0]}/{shard[1]}: {stats['output']['documents']} documents -> {out}")


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
    if recipe.model.init_from:
        from lmforge.finetune import base_tokenizer
        return base_tokenizer(run, recipe)
    from lmforge.tokenizer.train import train_tokenizer
    t0 = time.time()
    say(f"tokenizer: training {recipe.tokenizer.kind}, vocab {recipe.tokenizer.vocab_size}")
    tok = train_tokenizer(recipe.tokenizer, run.data / "documents.jsonl", run.tokenizer,
                          language_alpha=recipe.data.language_alpha, seed=recipe.seed)
    run.record_stage("tokenizer", time.time() - t0, inputs=[run.data / "documents.jsonl"],
                     outputs=[run.tokenizer / "tokenizer.json"], vocab_size=tok.get_vocab_size())


def tokens(run: RunDir, recipe: Recipe, force: bool = False, workers: int | None = None) -> None:
    _require(run, "tokens", "tokenizer")
    if not _begin(run, "tokens", force):
        return
    task = _task(recipe)
    if task is not None:
        return task.tokens(run, recipe)
    from lmforge.governance.canaries import make_canaries, training_texts
    from lmforge.tokenizer.shards import encode_shards
    t0 = time.time()
    canaries = make_canaries(recipe.data.canaries, recipe.seed) if recipe.data.canaries.repetitions else []
    meta = encode_shards(run.tokenizer, run.data / "documents.jsonl", run.tokens,
                         val_fraction=recipe.tokenizer.val_fraction, seed=recipe.seed, workers=workers,
                         extra_train=training_texts(canaries))
    outputs = [run.tokens / "train.bin", run.tokens / "val.bin", run.tokens / "meta.json"]
    if canaries:     # the secrets stay here, for the governance stage; no card prints them
        atomic.write_json(run.tokens / "canaries.json", canaries)
        outputs.append(run.tokens / "canaries.json")
    else:
        (run.tokens / "canaries.json").unlink(missing_ok=True)
    run.record_stage("tokens", time.time() - t0, inputs=[run.tokenizer / "tokenizer.json"], outputs=outputs,
                     train_tokens=meta["train_tokens"], val_tokens=meta["val_tokens"],
                     canaries=len([c for c in canaries if c["repetitions"]]))
    say(f"tokens: {meta['train_tokens']:,} train / {meta['val_tokens']:,} validation tokens"
        + (f" ({meta['inserted_docs']} canary documents inserted)" if canaries else ""))


def prepare(run: RunDir, recipe: Recipe, force: bool = False, workers: int | None = None) -> None:
    data(run, recipe, force, workers)
    tokenizer(run, recipe, force)
    tokens(run, recipe, force, workers)


# ---------------------------------------------------------------------------- train
def model_config_for(recipe: Recipe, vocab_size: int):
    cfg = recipe.model.resolved()
    return replace(cfg, vocab_size=cfg.vocab_size or vocab_size)


def train(run: RunDir, recipe: Recipe, force: bool = False, resume: bool = False) -> None:
    from lmforge.finetune import attach_lora, base_model
    from lmforge.models.io import list_steps
    from lmforge.models.registry import build_model, family_of
    from lmforge.tokenizer.shards import read_shards
    from lmforge.train import distributed
    from lmforge.train.loop import Trainer, truncate_metrics
    from lmforge.train.objectives import build_objective

    _require(run, "train", "tokens")
    run.check_outputs("tokens")
    has_checkpoints = bool(list_steps(run.checkpoints))
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
    trainer = None
    try:
        # The recipe's global batch (batch_size x grad_accum) holds at any world size: ranks
        # take over accumulation steps, so one recipe and its checkpoints work on 1 or N processes.
        if tc.grad_accum % info.world:
            raise UserError(f"train.grad_accum ({tc.grad_accum}) must be divisible by the number of "
                            f"processes ({info.world}): the ranks share the recipe's accumulation steps; "
                            f"use --set train.grad_accum={info.world * max(1, tc.grad_accum // info.world)}")
        tc = replace(tc, grad_accum=tc.grad_accum // info.world)
        tokenizer = _tokenizer(run)
        examples = None
        task = _task(recipe)
        if task is not None:
            examples = task.examples(run)
            train_tokens = val_tokens = None
            vocab = tokenizer.get_vocab_size()
        else:
            train_tokens, val_tokens, meta = read_shards(run.tokens)
            vocab = meta["vocab_size"]
        torch.manual_seed(recipe.seed)
        model = base_model(recipe) if recipe.model.init_from else build_model(model_config_for(recipe, vocab))
        mcfg = model.cfg
        seq_len = tc.seq_len or mcfg.max_seq_len
        if seq_len > mcfg.max_seq_len:
            raise UserError(f"train.seq_len ({seq_len}) exceeds model.max_seq_len ({mcfg.max_seq_len})")
        for name, arr in (("training", train_tokens), ("validation", val_tokens)):
            if arr is not None and len(arr) < seq_len + 2:
                raise UserError(f"the {name} split has {len(arr)} tokens, fewer than one window of "
                                f"{seq_len}; add data or lower train.seq_len")
        if task is not None:
            task.before_training(run, recipe, model, examples, seq_len, tokenizer)
        if tc.adapter == "lora":
            attach_lora(model, recipe)
        objective = build_objective(tc.objective, model, tokenizer, tc, examples=examples)
        if info.enabled and not objective.distributed:
            raise UserError(f"train.objective = '{objective.name}' trains in one process; run it without torchrun")
        mix = language_mix(run, recipe, train_tokens, seq_len) if task is None else None
        try:
            batches = objective.train_batches(train_tokens, seq_len, tc.batch_size, recipe.seed, tc.grad_accum,
                                              rank=info.rank, world=info.world, **({"mix": mix} if mix else {}))
        except ValueError as e:
            raise UserError(f"train: {e}") from None
        val_batches = objective.val_batches(val_tokens, seq_len, tc.eval_batches * tc.batch_size, tc.batch_size,
                                            seed=recipe.seed)
        trainer = Trainer(model, tc, batches, val_batches, seed=recipe.seed, ckpt_dir=run.checkpoints,
                          log=run.log_metrics, dist=info, objective=objective)
        sampler = None
        if task is not None and info.is_main:
            trainer.on_validate = task.probe(run, recipe, model, examples, run.log_metrics)
        if family_of(model).generative and info.is_main and not (info.enabled and tc.distributed == "fsdp"):
            sampler = trainer.on_validate = LiveSampler(model, tokenizer, recipe, run.log_metrics)
        if resume:
            step = trainer.resume()
            if step is None:
                say("train: no usable checkpoint, starting from scratch")
                if info.is_main:
                    run.metrics.unlink(missing_ok=True)
            else:
                say(f"train: resuming at step {step}")
                if info.is_main:
                    truncate_metrics(run.metrics, step)
        n_params = sum(p.numel() for p in model.parameters())
        say(f"train: {mcfg.arch}, {n_params / 1e6:.2f}M parameters, {objective.name}, {info.world} process(es), "
             f"{'%.0f s budget' % tc.time_budget_s if tc.time_budget_s else '%d steps' % tc.max_steps}")
        t0 = time.time()
        try:
            state = trainer.fit()
        finally:
            if sampler is not None:
                sampler.close()
        if info.is_main:
            from lmforge.models.io import find_weights
            weights = [p for p in find_weights(run.path).iterdir() if p.is_file()]   # for `lmforge verify`
            run.record_stage("train", time.time() - t0, inputs=[run.token_files[0]], outputs=weights,
                             steps=state.step, tokens=state.tokens, train_seconds=round(state.train_seconds, 2),
                             best_val_loss=state.best_val_loss, parameters=n_params, world_size=info.world,
                             arch=mcfg.arch, objective=objective.name, init_from=recipe.model.init_from or None,
                             trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
                             adapter=tc.adapter or None, compile=trainer.compile_record,
                             language_weights=mix.weights if mix else None, **objective.summary())
            say(f"train: {state.step} steps, best val loss {state.best_val_loss:.4f}")
        # ranks leave together: one that tears down while the main rank is still busy (a task's
        # last probe, the record) can leave that rank hanging in gloo's shutdown
        distributed.barrier(info)
    finally:
        trainer = None          # its DDP reducer must not be the process group's last holder (teardown)
        distributed.teardown(info)


def language_mix(run: RunDir, recipe: Recipe, train_tokens, seq_len: int):
    """The training windows' language mix for multilingual shards (data.language_alpha), or None."""
    from lmforge.data.language_mix import LanguageMix, read_languages
    languages = read_languages(run.tokens)
    if languages is None or len(languages["train"].languages()) < 2:
        return None
    mix = LanguageMix(languages["train"], recipe.data.language_alpha, len(train_tokens), seq_len)
    say("train: languages sampled with alpha %g: " % mix.alpha
        + ", ".join(f"{lang} {p:.1%}" for lang, p in sorted(mix.weights.items(), key=lambda kv: -kv[1])))
    return mix


class LiveSampler:
    """At each validation, completes the recipe's sample prompts with the model as it is then
    (the engine follows the training weights: models are never changed by an engine)."""

    def __init__(self, model, tokenizer, recipe: Recipe, log):
        self.model, self.tokenizer, self.recipe, self.log = model, tokenizer, recipe, log
        self.engine = None

    def __call__(self, step: int) -> None:
        ec = self.recipe.eval
        if not ec.samples_during_training or not ec.samples or not ec.sample_prompts:
            return
        from lmforge.infer.engine import Engine
        if self.engine is None:
            self.engine = Engine(self.model, self.tokenizer, max_batch=ec.samples)
        for i, prompt in enumerate(ec.sample_prompts[:ec.samples]):
            text = self.engine.generate(prompt, max_tokens=ec.sample_tokens, temperature=ec.temperature,
                                        top_k=ec.top_k, seed=self.recipe.seed + i).text
            self.log({"kind": "sample", "step": step, "prompt": prompt, "completion": text})

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


# ---------------------------------------------------------------------------- evaluate
def compression_bits_per_byte(text: bytes) -> dict:
    """gzip -9 and xz -9 on the same text: the baseline a language model must beat."""
    n = max(len(text), 1)
    return {"gzip_bits_per_byte": round(8 * len(gzip.compress(text, 9)) / n, 4),
            "xz_bits_per_byte": round(8 * len(lzma.compress(text, preset=9)) / n, 4)}


def evaluate(run: RunDir, recipe: Recipe, force: bool = False) -> dict:
    """eval/pretrain.json: bits per byte against gzip and xz for language models; masked-LM
    accuracy against a unigram baseline, and pseudo-log-likelihood, for encoders; held-out
    the fine-tuning task's own measurement, in eval/<task>.json, for fine-tuned runs (finetune/)."""
    from lmforge.models.io import load_model
    from lmforge.tokenizer.shards import read_shards

    _require(run, "evaluate", "train")
    task = _task(recipe)
    out_path = run.eval_result(task.result if task is not None else "pretrain")
    if not _begin(run, "evaluate", force) and out_path.exists():
        return json.loads(out_path.read_text())
    t0 = time.time()
    model = load_model(run.path, arch=recipe.model.arch)
    window = recipe.train.seq_len or model.cfg.max_seq_len
    objective = recipe.train.objective
    if task is not None:
        result = task.evaluate(run, recipe, model, window)
    else:
        train_tokens, val_tokens, meta = read_shards(run.tokens)
        if objective == "masked_lm":
            result = _evaluate_encoder(run, recipe, model, train_tokens, val_tokens, window)
        else:
            result = _evaluate_language_model(run, recipe, model, val_tokens, meta, window)
        languages = _evaluate_languages(run, recipe, model, val_tokens, window)
        if languages is not None:
            result["languages"] = languages
    result = {"arch": model.cfg.arch, "objective": objective, **result}
    atomic.write_json(out_path, result)
    headline = ("bits_per_byte", "mlm_accuracy", "sft_loss_after", "reward_accuracy_after", "accuracy")
    run.record_stage("evaluate", time.time() - t0, outputs=[out_path], result=out_path.stem,
                     **{k: result[k] for k in headline if k in result})
    return result


def _evaluate_language_model(run: RunDir, recipe: Recipe, model, val_tokens, meta: dict, window: int) -> dict:
    from lmforge.eval.likelihood import score_token_stream
    from lmforge.infer.engine import Engine
    ec = recipe.eval
    scored = val_tokens if not ec.max_val_tokens else val_tokens[:ec.max_val_tokens]
    nll, n = score_token_stream(model, scored, window=window, batch_size=16)
    val_bytes = meta["val_bytes"] if not ec.max_val_tokens else meta["val_bytes"] * len(scored) / len(val_tokens)
    result = {"val_loss": round(nll / n, 5), "token_perplexity": round(math.exp(nll / n), 3),
              "bits_per_byte": round(nll / math.log(2) / val_bytes, 4),
              "scored_tokens": n, "val_bytes": int(val_bytes),
              **compression_bits_per_byte(run.val_text.read_bytes())}
    from lmforge.finetune import load_base
    base = load_base(recipe)       # continued pre-training: the starting model on the same text
    if base is not None:
        before, _ = score_token_stream(base, scored, window=window, batch_size=16)
        result["bits_per_byte_before"] = round(before / math.log(2) / val_bytes, 4)
    if ec.code_modules:
        from lmforge.eval.code_exec import evaluate_code
        result["code"] = evaluate_code(run, recipe, model, base)
    engine = Engine(model, _tokenizer(run), threads=None, copy_model=False)
    try:
        result["samples"] = [
            {"prompt": p, "completion": engine.generate(p, max_tokens=ec.sample_tokens, temperature=ec.temperature,
                                                        top_k=ec.top_k, seed=recipe.seed + i).text}
            for i, p in enumerate(ec.sample_prompts[:ec.samples])]
    finally:
        engine.close()
    beat = "beats" if result["bits_per_byte"] < result["gzip_bits_per_byte"] else "does NOT beat"
    say(f"evaluate: val loss {result['val_loss']:.3f}, {result['bits_per_byte']:.3f} bits/byte "
         f"({beat} gzip -9 at {result['gzip_bits_per_byte']:.3f}, xz -9 {result['xz_bits_per_byte']:.3f})"
         + (f"; the starting model {result['bits_per_byte_before']:.3f}" if "bits_per_byte_before" in result else ""))
    if "code" in result:
        code = result["code"]
        say(f"evaluate: pass@1 {code['pass_at_1']} on {code['problems']} doctested functions"
             + (f" (starting model {code['pass_at_1_before']})" if "pass_at_1_before" in code else ""))
    return result


def _evaluate_encoder(run: RunDir, recipe: Recipe, model, train_tokens, val_tokens, window: int) -> dict:
    from lmforge.eval.masked_lm import evaluate_masked
    from lmforge.train.objectives import build_objective
    ec = recipe.eval
    objective = build_objective("masked_lm", model, _tokenizer(run), recipe.train)
    result = evaluate_masked(model, objective, train_tokens, val_tokens, seq_len=window, windows=ec.mlm_windows,
                             pll_tokens=ec.pll_tokens, batch_size=ec.batch_size, seed=recipe.seed)
    beat = "beats" if result["mlm_accuracy"] > result["unigram_mlm_accuracy"] else "does NOT beat"
    say(f"evaluate: masked-LM accuracy {result['mlm_accuracy']:.3f} ({beat} the unigram baseline at "
         f"{result['unigram_mlm_accuracy']:.3f}), loss {result['mlm_loss']:.3f}, "
         f"pseudo-perplexity {result['pseudo_perplexity']:.1f}")
    return result


def _evaluate_languages(run: RunDir, recipe: Recipe, model, val_tokens, window: int) -> dict | None:
    """Per-language fertility and bits per byte (eval/languages.py) for shards whose documents
    have a language."""
    from lmforge.data.language_mix import read_languages
    from lmforge.eval.languages import language_table
    languages = read_languages(run.tokens)
    if languages is None:
        return None
    ec = recipe.eval
    if recipe.train.objective == "masked_lm":
        from lmforge.eval.masked_lm import pseudo_log_likelihood
        from lmforge.train.objectives import build_objective
        objective = build_objective("masked_lm", model, _tokenizer(run), recipe.train)

        def score(stream, ordinary: int) -> float:
            nll, scored = pseudo_log_likelihood(model, objective, stream, window, ec.pll_tokens, ec.batch_size,
                                                recipe.seed)
            return nll / max(scored, 1) * ordinary
    else:
        from lmforge.eval.likelihood import score_token_stream

        def score(stream, ordinary: int) -> float:
            return score_token_stream(model, stream, window=window, batch_size=16)[0]
    table = language_table(score, languages, val_tokens, recipe.data.language_alpha)
    say("evaluate: bits per byte by language: " + ", ".join(
        f"{lang} {row.get('bits_per_byte', float('nan')):.3f}" for lang, row in table["by_language"].items())
        + f" (spread {table['bits_per_byte_spread']})")
    return table


def _tokenizer(run: RunDir):
    from lmforge.tokenizer.load import load_tokenizer
    return load_tokenizer(run.tokenizer)


# ---------------------------------------------------------------------------- governance
def governance(run: RunDir, recipe: Recipe, force: bool = False) -> dict | None:
    """eval/governance.json: bias and privacy measurements and the release gate (governance/)."""
    from lmforge.governance.assess import assess
    _require(run, "governance", "evaluate")
    out_path = run.eval_result("governance")
    if not recipe.governance.enabled:
        say("governance: off in the recipe ([governance] enabled = false)")
        return None
    if not _begin(run, "governance", force) and out_path.exists():
        from lmforge.governance.gate import regate     # the same measurements, today's thresholds
        result = regate(json.loads(out_path.read_text()), recipe.governance)
        atomic.write_json(out_path, result)
        run.record_stage("governance", result["seconds"], outputs=[out_path], passed=result["passed"])
        return result
    result = assess(run, recipe)
    run.record_stage("governance", result["seconds"], outputs=[out_path], passed=result["passed"])
    failed = [r["check"] for r in result["checks"] if r["status"] == "FAIL"]
    say(f"governance: {len(result['checks'])} checks, " + (f"FAILED: {', '.join(failed)}" if failed else "all pass")
        + f" ({result['seconds']:.0f} s; `lmforge check {run.path}` for the table)")
    return result


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
    governance(run, recipe, force)
    report(run, recipe)
