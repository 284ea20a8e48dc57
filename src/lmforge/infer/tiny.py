"""A tiny random-weight run directory, for smoke tests, benchmarks and demos.

It has the layout a trained run has (tokenizer/ with a chat template, and
checkpoints/step-N/), so everything that loads a run can be exercised in
seconds without training anything. The text it writes is gibberish.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from lmforge.tokenizer.specials import CHAT_TEMPLATE
from lmforge.models.config import ModelConfig
from lmforge.models.llama.config import LlamaConfig
from lmforge.models.registry import build_model
from lmforge.train.checkpoint import save_checkpoint

SPECIAL_TOKENS = ["<|bos|>", "<|eos|>", "<|pad|>", "<|mask|>", "<|system|>", "<|user|>",
                  "<|assistant|>", "<|end|>"]


def sample_corpus() -> list[str]:
    """Docstrings of a few standard-library modules plus some non-ASCII lines."""
    import collections, json as json_mod, pathlib, textwrap, threading
    docs = [m.__doc__ or "" for m in (collections, json_mod, pathlib, textwrap, threading)]
    docs += ["café naïve façade — 日本語のテキスト, emoji 🙂🚀, Ελληνικά, русский текст."] * 20
    return docs


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def make_tiny_run(run: str | Path, cfg: ModelConfig | None = None, vocab_size: int = 512,
                  seed: int = 0) -> Path:
    """Write tokenizer/ and checkpoints/step-000000/ for a random model; return the run path."""
    run = Path(run)
    tok = train_tokenizer(sample_corpus(), vocab_size)
    (run / "tokenizer").mkdir(parents=True, exist_ok=True)
    tok.save(str(run / "tokenizer" / "tokenizer.json"))
    config = {"chat_template": CHAT_TEMPLATE, "bos_token": "<|bos|>", "eos_token": "<|eos|>",
              "pad_token": "<|pad|>"}
    (run / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    cfg = replace(cfg or LlamaConfig(preset="llama-mini", n_layer=2, d_model=64, n_head=4, max_seq_len=128),
                  vocab_size=tok.get_vocab_size())
    if isinstance(cfg, LlamaConfig):   # zero-initialised projections would make every random model alike
        cfg = replace(cfg, zero_init_out=False)
    torch.manual_seed(seed)
    model = build_model(cfg.resolved())
    save_checkpoint(run / "checkpoints", 0, model.state_dict(), model.cfg, None, {"step": 0})
    return run
