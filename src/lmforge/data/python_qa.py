"""A chat set made from the standard library itself, for the quickstart's fine-tuning stage.

For every documented public function and class of the interpreter's own public modules:

    user:       What does `json.dumps` do?          (a class: What is `collections.Counter` for?)
    assistant:  the first paragraph of its docstring, on one line

Modules come in a seeded shuffled order, each module's questions together, so splitting the
list in order (data.conversation_split) holds whole modules out for evaluation. The answers are
text the pre-training stage has read (python_docs holds the same docstrings): fine-tuning
teaches the model to answer in the chat format from what it already knows, not new facts.

`data.conversations = "builtin:python-qa"` selects it.
"""

from __future__ import annotations

import random

from lmforge.data.sources import documented, stdlib_files

NAME = "builtin:python-qa"
MIN_ANSWER, MAX_ANSWER = 40, 400      # characters: shorter says nothing, longer is rarely one thought


def first_paragraph(doc: str) -> str:
    return " ".join(doc.strip().split("\n\n")[0].split())


def question(name: str, kind: str) -> str:
    return f"What is `{name}` for?" if kind == "class" else f"What does `{name}` do?"


def stdlib_qa(seed: int = 0) -> list[tuple[dict, str]]:
    """[(chat example, where it came from)] in the order described above."""
    files = list(stdlib_files())
    random.Random(seed).shuffle(files)
    out = []
    for path in files:
        try:
            entries = documented(path)
        except (SyntaxError, ValueError):
            continue
        for name, kind, doc in entries:
            answer = first_paragraph(doc)
            private = any(part.startswith("_") for part in name.split("."))
            if kind == "module" or private or not MIN_ANSWER <= len(answer) <= MAX_ANSWER or ">>>" in answer:
                continue
            out.append(({"messages": [{"role": "user", "content": question(name, kind)},
                                      {"role": "assistant", "content": answer}]}, f"{path}:{name}"))
    return out
