"""A classifier run at inference time: texts in, label probabilities out (`lmforge classify`,
`POST /v1/classify`)."""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from lmforge.errors import UserError
from lmforge.models.classifier import is_classifier
from lmforge.models.io import find_weights, load_model
from lmforge.tokenizer.load import find_tokenizer_dir, load_tokenizer, special_ids
from lmforge.train.objectives.classify import predict


class Classifier:
    def __init__(self, model, tokenizer, threads: int | None = None):
        if not is_classifier(model):
            raise UserError(f"the model (arch '{model.cfg.arch}') has no classifier head; train one with "
                            f"train.objective = \"classify\"")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.labels = list(model.cfg.labels)
        self.pad_id = special_ids(tokenizer)["pad"] or 0
        self.threads = threads
        self._lock = threading.Lock()     # one forward at a time: torch threads are shared

    @classmethod
    def from_run(cls, path: str | Path, threads: int | None = None) -> "Classifier":
        ckpt = find_weights(path)
        return cls(load_model(ckpt), load_tokenizer(find_tokenizer_dir(Path(path), ckpt)), threads)

    def classify(self, texts: list[str]) -> list[dict]:
        """[{"label": best label, "scores": {label: probability}}] per text, in order."""
        examples = [(enc.ids, 0) for enc in self.tokenizer.encode_batch(texts)]
        with self._lock:
            if self.threads:
                torch.set_num_threads(self.threads)
            probs = predict(self.model, examples, self.model.cfg.max_seq_len, self.pad_id)
        return [{"label": self.labels[int(p.argmax())],
                 "scores": {lab: round(float(v), 6) for lab, v in zip(self.labels, p)}} for p in probs]
