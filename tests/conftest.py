"""Shared test set-up: quiet progress bars, the shared data folder, and a tiny finished run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("LMFORGE_NO_PROGRESS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def tiny_corpus_dir(root: Path) -> Path:
    """A few hundred KB of real English prose (Python's pydoc topics) as .txt files."""
    from pydoc_data.topics import topics
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, (name, text) in enumerate(sorted(topics.items())[:60]):
        (corpus / f"{i:03d}-{name}.txt").write_text(text, encoding="utf-8")
    return corpus


def tiny_recipe(root: Path, corpus: Path, **sections) -> Path:
    """A recipe that runs end to end in seconds: small BPE, a tiny model, a few dozen steps."""
    train = {"batch_size": 8, "seq_len": 64, "max_steps": 40, "eval_every": 20, "eval_batches": 2,
             "checkpoint_every": 20, "log_every": 5, "warmup_steps": 5, "lr": 3e-3, "dtype": "float32"}
    train.update(sections.get("train", {}))
    lines = ['name = "tiny"', "seed = 7", "", "[data]",
             f'sources = [{{ kind = "files", path = "{corpus}", name = "topics", licence = "PSF-2.0" }}]',
             'steps = ["normalize", "exact_dedup", "pii"]', "", "[tokenizer]", 'kind = "bpe"',
             "vocab_size = 512", "val_fraction = 0.1", "", "[model]", 'preset = "tiny"', "max_seq_len = 64",
             "", "[train]"]
    lines += [f"{k} = {_toml(v)}" for k, v in train.items()]
    lines += ["", "[eval]", "samples = 1", "sample_tokens = 12", 'sample_prompts = ["The "]']
    path = root / "tiny.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def lmforge(*args: str, cwd: Path | None = None, timeout: int = 600, env: dict | None = None):
    """Run the real `lmforge` command line in a subprocess."""
    full_env = {**os.environ, "LMFORGE_NO_PROGRESS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "lmforge.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=full_env)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run directory (data, tokenizer, tokens, 40 training steps, evaluation, report).
    LMFORGE_TEST_TINY_RUN names one built earlier, read-only (bench/mutation.py builds it once
    rather than once per mutant)."""
    if os.environ.get("LMFORGE_TEST_TINY_RUN"):
        return Path(os.environ["LMFORGE_TEST_TINY_RUN"])
    root = tmp_path_factory.mktemp("tiny-run")
    recipe = tiny_recipe(root, tiny_corpus_dir(root))
    out = root / "run"
    result = lmforge("run", str(recipe), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out
