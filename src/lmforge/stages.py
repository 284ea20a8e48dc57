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
    if recipe.data.conversations:
        return _conversation_data(run, recipe)
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


def _conversation_data(run: RunDir, recipe: Recipe) -> None:
    """Fine-tuning data: every example read and checked, kept as data/conversations.jsonl."""
    from lmforge.data.conversations import read_conversations, read_preferences
    t0 = time.time()
    skipped = {}
    if recipe.train.objective == "dpo":
        pairs, n = read_preferences(recipe.data.conversations, recipe.data.skip_identical_pairs)
        records = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "where": p.where} for p in pairs]
        skipped = {"skipped_identical_pairs": n}
    else:
        records = [{"messages": c.messages, "where": c.where} for c in read_conversations(recipe.data.conversations)]
    out = run.data / "conversations.jsonl"
    atomic.write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    run.record_stage("data", time.time() - t0, inputs=[Path(recipe.data.conversations)], outputs=[out],
                     conversations=len(records), **skipped)
    _say(f"data: {len(records)} {'preference pairs' if recipe.train.objective == 'dpo' else 'conversations'} "
         f"from {recipe.data.conversations}"
         + (f" ({skipped['skipped_identical_pairs']} identical pairs left out)" if skipped.get("skipped_identical_pairs") else ""))


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
    if recipe.model.init_from:
        return _base_tokenizer(run, recipe)
    from lmforge.tokenizer.train import train_tokenizer
    t0 = time.time()
    _say(f"tokenizer: training {recipe.tokenizer.kind}, vocab {recipe.tokenizer.vocab_size}")
    tok = train_tokenizer(recipe.tokenizer, run.data / "documents.jsonl", run.tokenizer)
    run.record_stage("tokenizer", time.time() - t0, inputs=[run.data / "documents.jsonl"],
                     outputs=[run.tokenizer / "tokenizer.json"], vocab_size=tok.get_vocab_size())


def _base_tokenizer(run: RunDir, recipe: Recipe) -> None:
    """A model started from another run keeps that run's tokenizer (and its chat template)."""
    import shutil
    from lmforge.models.io import find_weights
    from lmforge.tokenizer.load import find_tokenizer_dir, load_tokenizer
    t0 = time.time()
    base = Path(recipe.model.init_from)
    source = find_tokenizer_dir(base, find_weights(base))
    with atomic.atomic_dir(run.tokenizer) as tmp:
        for f in source.iterdir():
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)
    run.record_stage("tokenizer", time.time() - t0, outputs=[run.tokenizer_json], copied_from=str(source),
                     vocab_size=load_tokenizer(run.tokenizer).get_vocab_size())
    _say(f"tokenizer: {source} (the base model's)")


def tokens(run: RunDir, recipe: Recipe, force: bool = False, workers: int | None = None) -> None:
    _require(run, "tokens", "tokenizer")
    if not _begin(run, "tokens", force):
        return
    if recipe.data.conversations:
        return _conversation_tokens(run, recipe)
    from lmforge.tokenizer.shards import encode_shards
    t0 = time.time()
    meta = encode_shards(run.tokenizer, run.data / "documents.jsonl", run.tokens,
                         val_fraction=recipe.tokenizer.val_fraction, seed=recipe.seed, workers=workers)
    run.record_stage("tokens", time.time() - t0, inputs=[run.tokenizer / "tokenizer.json"],
                     outputs=[run.tokens / "train.bin", run.tokens / "val.bin", run.tokens / "meta.json"],
                     train_tokens=meta["train_tokens"], val_tokens=meta["val_tokens"])
    _say(f"tokens: {meta['train_tokens']:,} train / {meta['val_tokens']:,} validation tokens")


CONVERSATION_SPLITS = ("train", "test", "val")


def _conversation_tokens(run: RunDir, recipe: Recipe) -> None:
    """tokens/conversations.json: each split's conversations rendered with the chat template, as
    token ids and the loss mask made while rendering (data/conversations.py)."""
    from lmforge.data.conversations import render, split
    t0 = time.time()
    tok = _tokenizer(run)
    records = _conversation_records(run)
    parts = split(records, tuple(recipe.data.conversation_split))

    def rendered_record(r: dict) -> dict:
        if "messages" in r:
            return dict(zip(("ids", "mask"), render(r["messages"], tok)))
        return {side: dict(zip(("ids", "mask"), render(r["prompt"] + [{"role": "assistant", "content": r[side]}], tok)))
                for side in ("chosen", "rejected")}

    rendered = {name: [rendered_record(r) for r in part] for name, part in zip(CONVERSATION_SPLITS, parts)}
    out = run.tokens / "conversations.json"
    atomic.write_json(out, rendered, indent=None)
    counts = {f"{name}_conversations": len(rendered[name]) for name in CONVERSATION_SPLITS}
    run.record_stage("tokens", time.time() - t0, inputs=[run.tokenizer_json], outputs=[out], **counts)
    _say("tokens: " + ", ".join(f"{n:,} {k.split('_')[0]}" for k, n in counts.items()) + " conversations")


def _conversation_records(run: RunDir) -> list[dict]:
    return [json.loads(line) for line in (run.data / "conversations.jsonl").read_text(encoding="utf-8").splitlines()]


def conversation_examples(run: RunDir) -> dict[str, list]:
    """Each split's rendered examples: (ids, mask) per conversation, or ((ids, mask), (ids, mask))
    per preference pair (chosen, rejected)."""
    path = run.tokens / "conversations.json"
    if not path.is_file():
        raise UserError(f"{run.path}: no rendered conversations (tokens/conversations.json); "
                        f"set data.conversations and run `lmforge prepare {run.path}`")
    raw = json.loads(path.read_text())

    def example(e: dict):
        if "ids" in e:
            return e["ids"], e["mask"]
        return (e["chosen"]["ids"], e["chosen"]["mask"]), (e["rejected"]["ids"], e["rejected"]["mask"])

    return {name: [example(e) for e in raw[name]] for name in CONVERSATION_SPLITS}


def dpo_reference(run: RunDir, model, examples: dict, seq_len: int, pad_id: int) -> dict:
    """The starting model's log-probabilities of every pair, computed once and kept in
    tokens/dpo_reference.json (a resumed run must not take them from its trained weights)."""
    from lmforge.train.objectives.dpo import reference_logprobs
    path = run.tokens / "dpo_reference.json"
    if not path.is_file():
        _say("train: reference log-probabilities of the starting model (once, cached)")
        atomic.write_json(path, {name: reference_logprobs(model, examples[name], seq_len, pad_id)
                                 for name in CONVERSATION_SPLITS}, indent=None)
    cached = json.loads(path.read_text())
    return {f"{name}_reference": cached[name] for name in ("train", "val", "test")}


def prepare(run: RunDir, recipe: Recipe, force: bool = False, workers: int | None = None) -> None:
    data(run, recipe, force, workers)
    tokenizer(run, recipe, force)
    tokens(run, recipe, force, workers)


# ---------------------------------------------------------------------------- train
def model_config_for(recipe: Recipe, vocab_size: int):
    cfg = recipe.model.resolved()
    return replace(cfg, vocab_size=cfg.vocab_size or vocab_size)


def train(run: RunDir, recipe: Recipe, force: bool = False, resume: bool = False) -> None:
    from lmforge.models.io import list_steps
    from lmforge.models.registry import build_model, family_of
    from lmforge.tokenizer.shards import read_shards
    from lmforge.train import distributed
    from lmforge.train.loop import Trainer, truncate_metrics
    from lmforge.train.objectives import build_objective

    _require(run, "train", "tokens")
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
        if tc.objective in ("sft", "dpo"):
            examples = conversation_examples(run)
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
        if tc.objective == "dpo":
            examples.update(dpo_reference(run, model, examples, seq_len, tokenizer.token_to_id("<|pad|>") or 0))
        objective = build_objective(tc.objective, model, tokenizer, tc, examples=examples)
        try:
            batches = objective.train_batches(train_tokens, seq_len, tc.batch_size, recipe.seed, tc.grad_accum,
                                              rank=info.rank, world=info.world)
        except ValueError as e:
            raise UserError(f"train: {e}") from None
        val_batches = objective.val_batches(val_tokens, seq_len, tc.eval_batches * tc.batch_size, tc.batch_size,
                                            seed=recipe.seed)
        trainer = Trainer(model, tc, batches, val_batches, seed=recipe.seed, ckpt_dir=run.checkpoints,
                          log=run.log_metrics, dist=info, objective=objective)
        sampler = None
        if family_of(model).generative and info.is_main and not (info.enabled and tc.distributed == "fsdp"):
            sampler = trainer.on_validate = LiveSampler(model, tokenizer, recipe, run.log_metrics)
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
        _say(f"train: {mcfg.arch}, {n_params / 1e6:.2f}M parameters, {objective.name}, {info.world} process(es), "
             f"{'%.0f s budget' % tc.time_budget_s if tc.time_budget_s else '%d steps' % tc.max_steps}")
        t0 = time.time()
        try:
            state = trainer.fit()
        finally:
            if sampler is not None:
                sampler.close()
        if info.is_main:
            run.record_stage("train", time.time() - t0, inputs=[run.token_files[0]],
                             steps=state.step, tokens=state.tokens, train_seconds=round(state.train_seconds, 2),
                             best_val_loss=state.best_val_loss, parameters=n_params, world_size=info.world,
                             arch=mcfg.arch, objective=objective.name, init_from=recipe.model.init_from or None,
                             **({"truncated_examples": objective.truncated} if tc.objective == "sft" else {}))
            _say(f"train: {state.step} steps, best val loss {state.best_val_loss:.4f}")
    finally:
        distributed.teardown(info)


def base_model(recipe: Recipe):
    """The model `model.init_from` names, in training mode, with its own config: keys the recipe
    sets besides init_from would be silently ignored, so they are refused."""
    from dataclasses import fields
    from lmforge.models.io import find_weights, load_model
    defaults = type(recipe.model)(arch=recipe.model.arch, init_from=recipe.model.init_from)
    changed = [f.name for f in fields(recipe.model) if getattr(recipe.model, f.name) != getattr(defaults, f.name)]
    if changed:
        raise UserError(f"model.{changed[0]} is taken from model.init_from ({recipe.model.init_from}); "
                        f"remove it from the recipe")
    find_weights(recipe.model.init_from)
    return load_model(recipe.model.init_from, arch=recipe.model.arch).train()


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
    accuracy against a unigram baseline, and pseudo-log-likelihood, for encoders."""
    from lmforge.models.io import load_model
    from lmforge.tokenizer.shards import read_shards

    _require(run, "evaluate", "train")
    out_path = run.eval_result("pretrain")
    if not _begin(run, "evaluate", force) and out_path.exists():
        return json.loads(out_path.read_text())
    t0 = time.time()
    model = load_model(run.path, arch=recipe.model.arch)
    window = recipe.train.seq_len or model.cfg.max_seq_len
    if recipe.train.objective == "sft":
        result = {"arch": model.cfg.arch, "objective": "sft", **_evaluate_sft(run, recipe, model, window)}
        atomic.write_json(out_path, result)
        run.record_stage("evaluate", time.time() - t0, outputs=[out_path], sft_loss=result["sft_loss_after"])
        return result
    if recipe.train.objective == "dpo":
        result = {"arch": model.cfg.arch, "objective": "dpo", **_evaluate_dpo(run, recipe, model, window)}
        atomic.write_json(out_path, result)
        run.record_stage("evaluate", time.time() - t0, outputs=[out_path],
                         reward_accuracy=result["reward_accuracy_after"])
        return result
    train_tokens, val_tokens, meta = read_shards(run.tokens)
    if recipe.train.objective == "masked_lm":
        result = _evaluate_encoder(run, recipe, model, train_tokens, val_tokens, window)
    else:
        result = _evaluate_language_model(run, recipe, model, val_tokens, meta, window)
    result = {"arch": model.cfg.arch, "objective": recipe.train.objective, **result}
    atomic.write_json(out_path, result)
    run.record_stage("evaluate", time.time() - t0, outputs=[out_path],
                     **{k: result[k] for k in ("bits_per_byte", "mlm_accuracy") if k in result})
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
    engine = Engine(model, _tokenizer(run), threads=None, copy_model=False)
    try:
        result["samples"] = [
            {"prompt": p, "completion": engine.generate(p, max_tokens=ec.sample_tokens, temperature=ec.temperature,
                                                        top_k=ec.top_k, seed=recipe.seed + i).text}
            for i, p in enumerate(ec.sample_prompts[:ec.samples])]
    finally:
        engine.close()
    beat = "beats" if result["bits_per_byte"] < result["gzip_bits_per_byte"] else "does NOT beat"
    _say(f"evaluate: val loss {result['val_loss']:.3f}, {result['bits_per_byte']:.3f} bits/byte "
         f"({beat} gzip -9 at {result['gzip_bits_per_byte']:.3f}, xz -9 {result['xz_bits_per_byte']:.3f})")
    return result


def _evaluate_sft(run: RunDir, recipe: Recipe, model, window: int) -> dict:
    """Held-out (test split) loss on the assistant's tokens, before and after; the first test
    prompts answered by the base model and the fine-tuned one, side by side."""
    from lmforge.data.conversations import split
    from lmforge.infer.engine import Engine
    from lmforge.models.io import load_model
    from lmforge.train.objectives.sft import assistant_nll
    ec = recipe.eval
    tok = _tokenizer(run)
    test = conversation_examples(run)["test"]
    pad = tok.token_to_id("<|pad|>") or 0
    base = load_model(recipe.model.init_from) if recipe.model.init_from else None
    result = {"sft_loss_after": round(assistant_nll(model, test, pad, window), 5),
              "sft_loss_before": None if base is None else round(assistant_nll(base, test, pad, window), 5),
              "test_conversations": len(test)}
    conversations = [r["messages"] for r in _conversation_records(run)]
    prompts = [c[:max(i for i, m in enumerate(c) if m["role"] == "assistant")]
               for c in split(conversations, tuple(recipe.data.conversation_split))[1][:ec.samples]]
    engines = {"tuned": Engine(model, tok, copy_model=False)}
    if base is not None:
        engines["base"] = Engine(base, tok, copy_model=False)
    try:
        result["samples"] = [{"prompt": p[-1]["content"],
                              **{name: e.chat(p, max_tokens=ec.sample_tokens, temperature=0.0).text
                                 for name, e in engines.items()}} for p in prompts]
    finally:
        for e in engines.values():
            e.close()
    before = result["sft_loss_before"]
    _say(f"evaluate: held-out assistant-token loss {result['sft_loss_after']:.3f}"
         + (f" (base model: {before:.3f})" if before is not None else ""))
    return result


def _evaluate_dpo(run: RunDir, recipe: Recipe, model, window: int) -> dict:
    """Held-out (test split) pairs: how often the tuned model's implicit reward prefers the chosen
    answer. Before training policy and reference are one model, every margin is 0: 0.5 by construction."""
    from lmforge.train.objectives.dpo import DPO
    tok = _tokenizer(run)
    examples = conversation_examples(run)
    reference = json.loads((run.tokens / "dpo_reference.json").read_text())["test"]
    objective = DPO([], examples["test"], [], reference, pad_id=tok.token_to_id("<|pad|>") or 0,
                    beta=recipe.train.dpo_beta)
    totals, n = {}, 0
    with torch.no_grad():
        model.eval()
        for batch in objective.val_batches(None, window, 0, 8, 0):
            _, metrics = objective.loss(model, batch)
            rows = batch["reference"].shape[0]
            for k, v in metrics.items():
                totals[k] = totals.get(k, 0.0) + float(v) * rows
            n += rows
    result = {"reward_accuracy_before": 0.5, "reward_accuracy_after": round(totals["reward_accuracy"] / n, 4),
              "reward_margin_after": round(totals["reward_margin"] / n, 4),
              "chosen_logprob_after": round(totals["chosen_logprob"] / n, 3),
              "rejected_logprob_after": round(totals["rejected_logprob"] / n, 3), "test_pairs": n}
    _say(f"evaluate: held-out reward accuracy {result['reward_accuracy_after']:.3f} (0.5 before training)")
    return result


def _evaluate_encoder(run: RunDir, recipe: Recipe, model, train_tokens, val_tokens, window: int) -> dict:
    from lmforge.eval.masked_lm import evaluate_masked
    from lmforge.train.objectives import build_objective
    ec = recipe.eval
    objective = build_objective("masked_lm", model, _tokenizer(run), recipe.train)
    result = evaluate_masked(model, objective, train_tokens, val_tokens, seq_len=window, windows=ec.mlm_windows,
                             pll_tokens=ec.pll_tokens, batch_size=ec.batch_size, seed=recipe.seed)
    beat = "beats" if result["mlm_accuracy"] > result["unigram_mlm_accuracy"] else "does NOT beat"
    _say(f"evaluate: masked-LM accuracy {result['mlm_accuracy']:.3f} ({beat} the unigram baseline at "
         f"{result['unigram_mlm_accuracy']:.3f}), loss {result['mlm_loss']:.3f}, "
         f"pseudo-perplexity {result['pseudo_perplexity']:.1f}")
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
