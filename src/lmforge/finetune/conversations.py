"""The conversation tasks: SFT on conversations, DPO on preference pairs (finetune/__init__.py).

    data       data.conversations -> data/conversations.jsonl (conversations, or preference pairs)
    tokens     each split rendered with the chat template -> tokens/conversations.json
    train      DPO: the starting model's reference log-probabilities, once -> tokens/dpo_reference.json
    evaluate   held-out assistant loss (eval/sft.json) or reward accuracy (eval/dpo.json)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from lmforge import atomic
from lmforge.data.conversations import read_conversations, read_preferences, render, split
from lmforge.errors import UserError
from lmforge.finetune import Task, load_base
from lmforge.infer.engine import Engine
from lmforge.recipe import Recipe
from lmforge.rundir import RunDir
from lmforge.stages import say
from lmforge.tokenizer.load import load_tokenizer, special_ids
from lmforge.train.objectives.dpo import DPO, reference_logprobs
from lmforge.train.objectives.sft import assistant_nll

CONVERSATION_SPLITS = ("train", "test", "val")


def conversation_data(run: RunDir, recipe: Recipe) -> None:
    """Fine-tuning data: every example read and checked, kept as data/conversations.jsonl."""
    if not recipe.data.conversations:
        raise UserError(f"train.objective = '{recipe.train.objective}' needs data.conversations (a chat JSONL, "
                        f"Alpaca JSON or preference file)")
    t0 = time.time()
    skipped = {}
    if recipe.train.objective == "dpo":
        pairs, n = read_preferences(recipe.data.conversations, recipe.data.skip_identical_pairs)
        records = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "where": p.where} for p in pairs]
        skipped = {"skipped_identical_pairs": n}
    else:
        d = recipe.data
        templates = (d.prompt_template, d.completion_template) if d.prompt_template else None
        records = [{"messages": c.messages, "where": c.where}
                   for c in read_conversations(d.conversations, templates, d.conversations_target or None)]
    out = run.data / "conversations.jsonl"
    atomic.write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    run.record_stage("data", time.time() - t0, inputs=[Path(recipe.data.conversations)], outputs=[out],
                     conversations=len(records), **skipped)
    say(f"data: {len(records)} {'preference pairs' if recipe.train.objective == 'dpo' else 'conversations'} "
         f"from {recipe.data.conversations}"
         + (f" ({skipped['skipped_identical_pairs']} identical pairs left out)" if skipped.get("skipped_identical_pairs") else ""))


def conversation_tokens(run: RunDir, recipe: Recipe) -> None:
    """tokens/conversations.json: each split's conversations rendered with the chat template, as
    token ids and the loss mask made while rendering (data/conversations.py)."""
    t0 = time.time()
    tok = load_tokenizer(run.tokenizer)
    records = conversation_records(run)
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
    say("tokens: " + ", ".join(f"{n:,} {k.split('_')[0]}" for k, n in counts.items()) + " conversations")


def conversation_records(run: RunDir) -> list[dict]:
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
    path = run.tokens / "dpo_reference.json"
    if not path.is_file():
        say("train: reference log-probabilities of the starting model (once, cached)")
        atomic.write_json(path, {name: reference_logprobs(model, examples[name], seq_len, pad_id)
                                 for name in CONVERSATION_SPLITS}, indent=None)
    cached = json.loads(path.read_text())
    return {f"{name}_reference": cached[name] for name in ("train", "val", "test")}


def evaluate_sft(run: RunDir, recipe: Recipe, model, window: int) -> dict:
    """Held-out (test split) loss on the assistant's tokens, before and after; the first test
    prompts answered by the base model and the fine-tuned one, side by side."""
    ec = recipe.eval
    tok = load_tokenizer(run.tokenizer)
    test = conversation_examples(run)["test"]
    pad = special_ids(tok)["pad"] or 0
    base = load_base(recipe)
    result = {"sft_loss_after": round(assistant_nll(model, test, pad, window), 5),
              "sft_loss_before": None if base is None else round(assistant_nll(base, test, pad, window), 5),
              "test_conversations": len(test)}
    conversations = [r["messages"] for r in conversation_records(run)]
    held_out = [c[:max(i for i, m in enumerate(c) if m["role"] == "assistant")]
                for c in split(conversations, tuple(recipe.data.conversation_split))[1]]
    prompts = held_out[:ec.samples]
    engines = {"tuned": Engine(model, tok, copy_model=False)}
    if base is not None:
        engines["base"] = Engine(base, tok, copy_model=False)
    def answer(engine: Engine, messages: list[dict]) -> str:
        ids = engine.apply_chat_template(messages)
        room = max(engine.context - ec.sample_tokens, 1)     # a long prompt keeps its end, as in training
        return engine.generate(ids[-room:], max_tokens=ec.sample_tokens, temperature=0.0).text

    try:
        result["samples"] = [{"prompt": p[-1]["content"], **{name: answer(e, p) for name, e in engines.items()}}
                             for p in prompts]
    finally:
        for e in engines.values():
            e.close()
    # every held-out prompt, for `lmforge arena BASE RUN --prompts eval/arena_prompts.jsonl --chat`
    atomic.write_text(run.eval / "arena_prompts.jsonl",
                      "".join(json.dumps({"prompt": p[-1]["content"]}, ensure_ascii=False) + "\n" for p in held_out))
    before = result["sft_loss_before"]
    say(f"evaluate: held-out assistant-token loss {result['sft_loss_after']:.3f}"
         + (f" (base model: {before:.3f})" if before is not None else ""))
    return result


def evaluate_dpo(run: RunDir, recipe: Recipe, model, window: int) -> dict:
    """Held-out (test split) pairs: how often the tuned model's implicit reward prefers the chosen
    answer. Before training policy and reference are one model, every margin is 0: 0.5 by construction."""
    tok = load_tokenizer(run.tokenizer)
    examples = conversation_examples(run)
    reference = json.loads((run.tokens / "dpo_reference.json").read_text())["test"]
    objective = DPO([], examples["test"], [], reference, pad_id=special_ids(tok)["pad"] or 0,
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
    say(f"evaluate: held-out reward accuracy {result['reward_accuracy_after']:.3f} (0.5 before training)")
    return result


class SupervisedChat(Task):
    result = "sft"

    def data(self, run: RunDir, recipe: Recipe) -> None:
        conversation_data(run, recipe)

    def tokens(self, run: RunDir, recipe: Recipe) -> None:
        conversation_tokens(run, recipe)

    def examples(self, run: RunDir) -> dict:
        return conversation_examples(run)

    def evaluate(self, run: RunDir, recipe: Recipe, model, window: int) -> dict:
        return evaluate_sft(run, recipe, model, window)


class Preferences(SupervisedChat):
    result = "dpo"

    def before_training(self, run: RunDir, recipe: Recipe, model, examples: dict, seq_len: int, tokenizer) -> None:
        examples.update(dpo_reference(run, model, examples, seq_len, special_ids(tokenizer)["pad"] or 0))

    def evaluate(self, run: RunDir, recipe: Recipe, model, window: int) -> dict:
        return evaluate_dpo(run, recipe, model, window)
