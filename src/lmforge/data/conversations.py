"""Fine-tuning examples: conversations read from the usual files, rendered with the one chat
template into token ids and a loss mask that is built while rendering.

Formats (one example per JSONL line, or one per element of a JSON array):
  chat                {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}
  Alpaca              {"instruction": ..., "input": ... (optional), "output": ...}
  prompt/completion   {"prompt": ..., "completion": ...}

Rendering follows tokenizer/specials.CHAT_TEMPLATE exactly — <|bos|>, then per message
"<|role|>\\ncontent<|end|>\\n" — and produces the very ids the tokenizer gives the rendered text
(special tokens split it into pieces that are encoded on their own). The mask is True for the
tokens that carry an assistant message's content and for its <|end|> (so the model learns to stop),
decided per token from its character offsets: nothing is searched for afterwards, so no example
loses its targets to a template that tokenized differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import UserError
from lmforge.jsonl import numbered_rows
from lmforge.tokenizer.specials import BOS, END

ROLES = ("system", "user", "assistant")


@dataclass
class Conversation:
    messages: list[dict]
    where: str               # "file:line" (JSONL) or "file[index]" (JSON array), for error messages


def to_messages(obj, where: str) -> list[dict]:
    """One example in any of the three formats as a list of messages; a one-line error if it is none."""
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or not messages:
            raise UserError(f"{where}: 'messages' must be a non-empty list")
    elif "instruction" in obj and "output" in obj:
        prompt = obj["instruction"] + (f"\n\n{obj['input']}" if obj.get("input") else "")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": obj["output"]}]
    elif "prompt" in obj and "completion" in obj:
        messages = [{"role": "user", "content": obj["prompt"]}, {"role": "assistant", "content": obj["completion"]}]
    else:
        raise UserError(f"{where}: not a chat ('messages'), Alpaca ('instruction', 'output') or "
                        f"prompt/completion example (keys: {', '.join(sorted(obj)) or 'none'})")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            role = m.get("role") if isinstance(m, dict) else m
            raise UserError(f"{where}: message {i} has role {role!r}; allowed: {', '.join(ROLES)}")
        if not isinstance(m.get("content"), str):
            raise UserError(f"{where}: message {i} ({m['role']}) has no text content")
    if not any(m["role"] == "assistant" for m in messages):
        raise UserError(f"{where}: no assistant turn, so nothing to learn from")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _objects(path: Path) -> list[tuple[object, str]]:
    """(parsed example, "file:line" or "file[index]") for every example of a .jsonl or .json file."""
    if not path.is_file():
        raise UserError(f"fine-tuning data not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid UTF-8") from None
    out = []
    if path.suffix == ".jsonl":
        out = [(obj, f"{path}:{n}") for n, obj in numbered_rows(text.splitlines(), path)]
    else:
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from None
        if not isinstance(items, list):
            raise UserError(f"{path}: expected a JSON array of examples (or use .jsonl, one per line)")
        out = [(obj, f"{path}[{i}]") for i, obj in enumerate(items)]
    if not out:
        raise UserError(f"{path}: no examples")
    return out


def read_conversations(path: str | Path, templates: tuple[str, str] | None = None,
                       target: str | Path | None = None) -> list[Conversation]:
    """Every example of a .jsonl or .json file (or of the built-in python_qa set); a bad one is an
    error naming file and line.

    templates: (prompt, completion) format strings over each record's fields, for data in no chat
    format ({"dialogue", "summary"} -> "Dialogue:\n{dialogue}\nSummary:" / "{summary}").
    target: a file of lines parallel to the text file `path` (translation): records
    {"source": line of path, "target": line of target}, to be formatted by `templates`."""
    from lmforge.data import python_qa
    if target:
        examples = _parallel(Path(path), Path(target))
    else:
        examples = python_qa.stdlib_qa() if str(path) == python_qa.NAME else _objects(Path(path))
    if templates:
        examples = [(_formatted(obj, templates, where), where) for obj, where in examples]
    return [Conversation(to_messages(obj, where), where) for obj, where in examples]


def _parallel(source: Path, target: Path) -> list[tuple[dict, str]]:
    sides = []
    for path in (source, target):
        if not path.is_file():
            raise UserError(f"fine-tuning data not found: {path}")
        sides.append(path.read_text(encoding="utf-8").splitlines())
    if len(sides[0]) != len(sides[1]):
        raise UserError(f"{source} has {len(sides[0])} lines but {target} has {len(sides[1])}; "
                        f"parallel files need one line each per example")
    return [({"source": a, "target": b}, f"{source}:{n}") for n, (a, b) in enumerate(zip(*sides), 1)]


def _formatted(obj, templates: tuple[str, str], where: str) -> dict:
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    try:
        return {"prompt": templates[0].format_map(obj), "completion": templates[1].format_map(obj)}
    except KeyError as e:
        raise UserError(f"{where}: no field {e} for data.prompt_template / data.completion_template "
                        f"(fields: {', '.join(sorted(obj))})") from None


def render(messages: list[dict], tokenizer) -> tuple[list[int], list[bool]]:
    """(token ids, loss mask) of a conversation rendered with the chat template."""
    special = {name: tokenizer.token_to_id(name) for name in (BOS, END, *(f"<|{r}|>" for r in ROLES))}
    missing = [name for name, i in special.items() if i is None]
    if missing:
        raise UserError(f"the tokenizer lacks the chat tokens {', '.join(missing)}: fine-tune a base whose "
                        f"tokenizer lmforge trained (or add them with tokenizer.path)")
    ids, mask = [special[BOS]], [False]
    newline = tokenizer.encode("\n", add_special_tokens=False).ids
    for m in messages:
        trained = m["role"] == "assistant"
        piece = tokenizer.encode("\n" + m["content"], add_special_tokens=False)
        ids += [special[f"<|{m['role']}|>"], *piece.ids, special[END], *newline]
        # a token is the message's when it holds any of its characters (offset past the "\n")
        mask += [False, *(trained and end > 1 for _, end in piece.offsets), trained, *[False] * len(newline)]
    return ids, mask


@dataclass
class Preference:
    prompt: list[dict]       # the conversation up to the answer
    chosen: str
    rejected: str
    where: str


def to_preference(obj, where: str) -> Preference:
    """A preference pair: {"prompt", "chosen", "rejected"}, or the Alpaca shape with "chosen" and
    "rejected" answers (../shared/data/instruction-data-with-preference.json)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("chosen"), str) or not isinstance(obj.get("rejected"), str):
        raise UserError(f"{where}: a preference pair needs text 'chosen' and 'rejected' answers")
    if obj["chosen"] == obj["rejected"]:
        raise UserError(f"{where}: 'chosen' equals 'rejected', so the pair prefers nothing")
    if "instruction" in obj:
        prompt = obj["instruction"] + (f"\n\n{obj['input']}" if obj.get("input") else "")
    elif isinstance(obj.get("prompt"), str):
        prompt = obj["prompt"]
    else:
        raise UserError(f"{where}: a preference pair needs a 'prompt' (or 'instruction')")
    return Preference([{"role": "user", "content": prompt}], obj["chosen"], obj["rejected"], where)


def read_preferences(path: str | Path, skip_identical: bool = False) -> tuple[list[Preference], int]:
    """Every pair of a .jsonl or .json file, and how many were skipped: a bad one is an error naming
    file and line, except that with `skip_identical` a pair whose answers are equal is counted and left out."""
    pairs, skipped = [], 0
    for obj, where in _objects(Path(path)):
        if skip_identical and isinstance(obj, dict) and obj.get("chosen") == obj.get("rejected"):
            skipped += 1
            continue
        pairs.append(to_preference(obj, where))
    return pairs, skipped


def split(items: list, fractions: tuple[float, ...] = (0.85, 0.1, 0.05)) -> list[list]:
    """Consecutive parts of `items` in the given proportions (the book's 85/10/5 split is in order)."""
    bounds, total = [0], 0.0
    for f in fractions:
        total += f
        bounds.append(round(total * len(items)))
    bounds[-1] = len(items)
    return [items[a:b] for a, b in zip(bounds, bounds[1:])]
