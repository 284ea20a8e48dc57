"""What the models that read rather than write share at inference time: the model in eval mode
with its tokenizer and pad id, loading from a run, and one forward at a time on torch's threads."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import torch

from lmforge.models.io import find_weights, load_model
from lmforge.tokenizer.load import find_tokenizer_dir, load_tokenizer, special_ids


class Reader:
    def __init__(self, model, tokenizer, threads: int | None = None):
        self.model, self.tokenizer, self.threads = model.eval(), tokenizer, threads
        self.pad_id = special_ids(tokenizer)["pad"] or 0
        self._lock = threading.Lock()     # one forward at a time: torch threads are shared

    @classmethod
    def from_run(cls, path: str | Path, threads: int | None = None):
        ckpt = find_weights(path)
        return cls(load_model(ckpt), load_tokenizer(find_tokenizer_dir(Path(path), ckpt)), threads)

    @contextlib.contextmanager
    def forward_pass(self):
        """Held while the model runs (a server calls from several threads)."""
        with self._lock:
            if self.threads:
                torch.set_num_threads(self.threads)
            yield
