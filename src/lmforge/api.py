"""The Python API, mirroring the CLI verbs.

    import lmforge
    lm = lmforge.load("runs/quickstart")
    print(lm.generate("The list type", max_tokens=40))
    print(lm.perplexity("A dictionary maps keys to values."))
"""

from __future__ import annotations

import math
from pathlib import Path

from lmforge.recipe import load_recipe
from lmforge.rundir import RunDir


class LanguageModel:
    """A trained run, ready to generate and score text."""

    def __init__(self, path: str | Path, dtype: str | None = None):
        from lmforge.infer.engine import Engine
        self.path = Path(path)
        self.engine = Engine.from_run(self.path, dtype=dtype)

    def generate(self, prompt: str, **sampling) -> str:
        """Complete `prompt` (keywords: max_tokens, temperature, top_k, top_p, stop, seed, ...)."""
        return self.engine.generate(prompt, **sampling).text

    def chat(self, messages: list[dict], **sampling) -> str:
        return self.engine.chat(messages, **sampling).text

    def perplexity(self, text: str) -> float:
        """Token perplexity of `text` (every token after the first scored once, with full context)."""
        ids = self.engine.encode(text)
        logprobs = self.engine.prompt_logprobs(ids)[1:]
        return math.exp(-sum(logprobs) / max(len(logprobs), 1))

    def close(self) -> None:
        self.engine.close()


def load(path: str | Path, dtype: str | None = None) -> LanguageModel:
    return LanguageModel(path, dtype=dtype)


def run(recipe: str | Path, out: str | Path, overrides: list[str] | None = None, force: bool = False) -> RunDir:
    """`lmforge run RECIPE --out OUT`: every stage, end to end."""
    from lmforge import stages
    r = load_recipe(recipe, overrides)
    run_dir = RunDir.create(out, r)
    stages.run_all(run_dir, r, force=force)
    return run_dir
