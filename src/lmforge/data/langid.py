"""Language identification with py3langid (its model ships inside the package: no download).

A document whose source declares its `language` keeps it (the allow list still applies).
Only the first few thousand characters are classified: that is enough for a stable answer
and keeps the step fast on long documents.
"""

from __future__ import annotations

from lmforge.data.config import LangIdConfig
from lmforge.data.steps import Record, Step
from lmforge.errors import UserError

_SAMPLE_CHARS = 3000


def load_identifier():
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        raise UserError("the langid step needs py3langid (pip install py3langid)") from None
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


class LangId(Step):
    name = "langid"

    def __init__(self, cfg: LangIdConfig):
        self.cfg = cfg
        self.allow = set(cfg.allow)
        self.identifier = load_identifier()

    def apply(self, doc, rec: Record):
        declared = doc.meta.get("language")     # the source's own `language`: kept, not guessed
        lang, prob = (declared, 1.0) if declared else self.identifier.classify(doc.text[:_SAMPLE_CHARS])
        prob = float(prob)
        if not declared:
            doc.meta["language"] = lang
            doc.meta["language_score"] = round(prob, 4)
        rec.count(f"lang:{lang}")
        if self.allow and lang not in self.allow:
            rec.reason = f"language {lang} not in {sorted(self.allow)}"
            return None
        threshold = self.cfg.thresholds.get(lang, self.cfg.threshold)
        if prob < threshold:
            rec.reason = f"language {lang} score {prob:.2f} < {threshold}"
            return None
        return doc
