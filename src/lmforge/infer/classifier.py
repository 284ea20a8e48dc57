"""A classifier run at inference time: texts in, label probabilities out (`lmforge classify`,
`POST /v1/classify`)."""

from __future__ import annotations

from lmforge.errors import UserError
from lmforge.infer.reader import Reader
from lmforge.models.classifier import is_classifier
from lmforge.train.objectives.classify import predict


class Classifier(Reader):
    def __init__(self, model, tokenizer, threads: int | None = None):
        if not is_classifier(model):
            raise UserError(f"the model (arch '{model.cfg.arch}') has no classifier head; train one with "
                            f"train.objective = \"classify\"")
        super().__init__(model, tokenizer, threads)
        self.labels = list(model.cfg.labels)

    def classify(self, texts: list[str]) -> list[dict]:
        """[{"label": best label, "scores": {label: probability}}] per text, in order."""
        examples = [(enc.ids, 0) for enc in self.tokenizer.encode_batch(texts)]
        with self.forward_pass():
            probs = predict(self.model, examples, self.model.cfg.max_seq_len, self.pad_id)
        return [{"label": self.labels[int(p.argmax())],
                 "scores": {lab: round(float(v), 6) for lab, v in zip(self.labels, p)}} for p in probs]
