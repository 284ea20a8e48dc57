"""Turning rows into prompts: template filling, gold answers and few-shot examples.

A few-shot prompt is k solved examples followed by the question, each solved
example being context + target delimiter + its answer, joined by the few-shot
delimiter (lm-evaluation-harness's layout). Examples are drawn with a fixed seed
and never include the question itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lmforge.errors import UserError
from lmforge.eval.tasks import Task


class _Row(dict):
    def __missing__(self, key):
        raise UserError(f"prompt template uses field {{{key}}}, which the rows lack "
                        f"(fields: {', '.join(sorted(self))})")


def render(template: str, row: dict) -> str:
    return template.format_map(_Row(row))


@dataclass
class Example:
    context: str
    answers: list[str]     # multiple choice: the choices; generation: the references
    gold: int = 0          # multiple choice: index of the right choice


def _choices(task: Task, row: dict) -> list[str]:
    p = task.prompt
    if p.choices_field:
        value = _Row(row)[p.choices_field]
        return [str(v) for v in value]
    return [render(c, row) for c in p.choices]


def _gold_index(value, choices: list[str], task: Task) -> int:
    text = str(value).strip()
    if text.lstrip("-").isdigit() and not any(c.strip() == text for c in choices):
        index = int(text)
    else:
        matches = [i for i, c in enumerate(choices) if c.strip() == text]
        if not matches:
            raise UserError(f"task {task.name}: gold {text!r} is neither an index nor one of "
                            f"the choices {choices}")
        index = matches[0]
    if not 0 <= index < len(choices):
        raise UserError(f"task {task.name}: gold index {index} is outside the {len(choices)} choices")
    return index


def make_example(task: Task, row: dict) -> Example:
    p = task.prompt
    if task.kind == "multiple_choice":
        choices = _choices(task, row)
        return Example(render(p.context, row), choices, _gold_index(_Row(row)[p.gold], choices, task))
    if p.references_field:
        refs = _Row(row)[p.references_field]
        refs = [refs] if isinstance(refs, str) else [str(r) for r in refs]
    else:
        refs = [render(r, row) for r in p.references]
    refs = [r for r in refs if r.strip()]
    if not refs:
        raise UserError(f"task {task.name}: an example has no reference text")
    return Example(render(p.context, row), refs)


def solved(task: Task, ex: Example) -> str:
    answer = ex.answers[ex.gold] if task.kind == "multiple_choice" else ex.answers[0]
    return ex.context + task.prompt.target_delimiter + answer


def build_contexts(task: Task, examples: list[Example], pool: list[Example], num_fewshot: int,
                   seed: int, pool_holds_examples: bool) -> list[str]:
    """Each example's full prompt, with `num_fewshot` solved examples from `pool` in front.

    pool_holds_examples: example i is pool[i] (both come from the same file), so it is skipped."""
    if num_fewshot <= 0:
        return [ex.context for ex in examples]
    available = len(pool) - (1 if pool_holds_examples else 0)
    if available < num_fewshot:
        raise UserError(f"task {task.name}: {num_fewshot}-shot needs {num_fewshot} other examples, "
                        f"only {available} available")
    rng = random.Random(seed)
    out = []
    for i, ex in enumerate(examples):
        picked: list[int] = []
        while len(picked) < num_fewshot:   # rejection sampling: pools are large, shots few
            j = rng.randrange(len(pool))
            if j not in picked and not (pool_holds_examples and j == i):
                picked.append(j)
        shots = [solved(task, pool[j]) for j in picked]
        out.append(task.prompt.fewshot_delimiter.join(shots + [ex.context]))
    return out
