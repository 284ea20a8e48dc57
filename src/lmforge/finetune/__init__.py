"""Tasks: what a run does differently when its data are not a stream of documents.

Each such objective has a `Task` that stands in for the pre-training halves of the stages
(stages.py asks `task_for(recipe)` and calls it, so no stage names an objective). The
fine-tuning tasks adapt a model (model.init_from); the vision-language task trains one:

    data       the task's examples read and checked -> data/
    tokenizer  model.init_from's tokenizer, copied (base_tokenizer below)
    tokens     each split rendered into token ids -> tokens/
    train      the base model (base_model below), the rendered examples, anything to compute
               once before the first step (DPO's reference log-probabilities)
    evaluate   the task's held-out measurement -> eval/<result>.json

    sft        conversations.py   chat / Alpaca / prompt-completion data, assistant-token loss
    dpo        conversations.py   preference pairs, DPO's loss against cached reference log-probs
    classify   classify.py        labelled texts, a classifier head
    contrastive  vision/task.py   images with captions, a `clip` model from scratch
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

from lmforge import atomic
from lmforge.errors import UserError
from lmforge.models.io import find_weights, load_model
from lmforge.recipe import Recipe
from lmforge.rundir import RunDir
from lmforge.tokenizer.load import copy_tokenizer_files, find_tokenizer_dir, load_tokenizer


class Task:
    """One objective's data, tokens, examples and evaluation."""
    result = ""          # eval/<result>.json
    needs_base = True    # fine-tunes model.init_from

    def data(self, run: RunDir, recipe: Recipe) -> None:
        raise NotImplementedError

    def tokens(self, run: RunDir, recipe: Recipe) -> None:
        raise NotImplementedError

    def examples(self, run: RunDir) -> dict:
        """What build_objective needs: the rendered examples of each split."""
        raise NotImplementedError

    def before_training(self, run: RunDir, recipe: Recipe, model, examples: dict, seq_len: int, tokenizer) -> None:
        """Prepare `model` and `examples` before the first step (in place)."""

    def probe(self, run: RunDir, recipe: Recipe, model, examples: dict, log):
        """What to measure at each validation besides the loss: a callable(step) that logs, or None."""
        return None

    def evaluate(self, run: RunDir, recipe: Recipe, model, window: int) -> dict:
        raise NotImplementedError


def task_for(recipe: Recipe) -> Task | None:
    """The task of the recipe's objective; None for pre-training on documents."""
    from lmforge.finetune.classify import Classification
    from lmforge.finetune.conversations import Preferences, SupervisedChat
    from lmforge.vision.task import ImageText
    tasks = {"sft": SupervisedChat, "dpo": Preferences, "classify": Classification, "contrastive": ImageText}
    cls = tasks.get(recipe.train.objective)
    if cls is None:
        return None
    if cls.needs_base and not recipe.model.init_from:
        raise UserError(f"train.objective = '{recipe.train.objective}' fine-tunes a model: set model.init_from "
                        f"to a run or checkpoint directory")
    return cls()


def base_tokenizer(run: RunDir, recipe: Recipe) -> None:
    """A model started from another run keeps that run's tokenizer (and its chat template)."""
    from lmforge.stages import say
    t0 = time.time()
    base = Path(recipe.model.init_from)
    source = find_tokenizer_dir(base, find_weights(base))
    with atomic.atomic_dir(run.tokenizer) as tmp:
        copy_tokenizer_files(source, tmp)
    run.record_stage("tokenizer", time.time() - t0, outputs=[run.tokenizer_json], copied_from=str(source),
                     vocab_size=load_tokenizer(run.tokenizer).get_vocab_size())
    say(f"tokenizer: {source} (the base model's)")


def base_model(recipe: Recipe):
    """The model `model.init_from` names, in training mode, with its own config: keys the recipe
    sets besides init_from would be silently ignored, so they are refused."""
    defaults = type(recipe.model)(arch=recipe.model.arch, init_from=recipe.model.init_from)
    changed = [f.name for f in fields(recipe.model) if getattr(recipe.model, f.name) != getattr(defaults, f.name)]
    if changed:
        raise UserError(f"model.{changed[0]} is taken from model.init_from ({recipe.model.init_from}); "
                        f"remove it from the recipe")
    find_weights(recipe.model.init_from)
    return load_model(recipe.model.init_from, arch=recipe.model.arch).train()


def load_base(recipe: Recipe):
    """The base model for before/after comparisons (eval mode); None when training began from scratch."""
    return load_model(recipe.model.init_from) if recipe.model.init_from else None


def attach_lora(model, recipe: Recipe) -> None:
    """`train.adapter = "lora"`: adapters on the base model's target layers, everything else frozen."""
    from lmforge.models.lora import LoraSpec, add_lora, has_lora
    from lmforge.stages import say
    tc = recipe.train
    if not recipe.model.init_from:
        raise UserError("train.adapter = 'lora' adapts a model: set model.init_from")
    if tc.objective == "classify":
        raise UserError("train.adapter = 'lora' with train.objective = 'classify' is not supported: the new head "
                        "would need saving beside the adapter; use train.train_layers instead")
    if has_lora(model):
        raise UserError(f"model.init_from ({recipe.model.init_from}) is itself a LoRA run; fold its adapter in "
                        f"first (`lmforge merge {recipe.model.init_from} --out DIR`) and start from DIR")
    base = str(find_weights(recipe.model.init_from).resolve())
    names = add_lora(model, LoraSpec(tc.lora_rank, tc.lora_alpha, tc.lora_dropout, list(tc.lora_targets), base))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"train: LoRA rank {tc.lora_rank} on {len(names)} layers ({', '.join(sorted(set(n.rsplit('.', 1)[-1] for n in names)))}); "
         f"{trainable / 1e6:.3f}M parameters train")
