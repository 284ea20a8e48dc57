"""Classic NLP preprocessing: lower-casing, stop-word removal, stemming, lemmatisation.

Off by default. These steps help bag-of-words models (TF-IDF, topic models) but hurt a
language model, which must learn to produce case, function words and inflections:
see docs/data.md. Words are rewritten in place, so spacing and punctuation are kept.
"""

from __future__ import annotations

import re

from lmforge.data.config import NlpConfig
from lmforge.data.steps import Record, Step
from lmforge.errors import UserError

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")

# Common English function words (articles, pronouns, auxiliaries, prepositions, conjunctions).
ENGLISH_STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves
""".split())

_SNOWBALL = {"en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian",
             "nl": "dutch", "pt": "portuguese", "ru": "russian", "sv": "swedish", "da": "danish",
             "fi": "finnish", "no": "norwegian", "hu": "hungarian", "ro": "romanian", "tr": "turkish"}


class Nlp(Step):
    name = "nlp"

    def __init__(self, cfg: NlpConfig):
        self.cfg = cfg
        if cfg.remove_stop_words and cfg.language != "en":
            raise UserError(f"data.nlp.remove_stop_words: only 'en' has a stop-word list, got {cfg.language!r}")
        self.stemmer = None
        if cfg.stem:
            try:
                import snowballstemmer
            except ImportError:
                raise UserError("data.nlp.stem needs snowballstemmer (pip install snowballstemmer)") from None
            if cfg.language not in _SNOWBALL:
                raise UserError(f"data.nlp.language: no stemmer for {cfg.language!r}; "
                                f"available: {', '.join(sorted(_SNOWBALL))}")
            self.stemmer = snowballstemmer.stemmer(_SNOWBALL[cfg.language])
        if cfg.lemmatize:
            try:
                import simplemma
            except ImportError:
                raise UserError("data.nlp.lemmatize needs simplemma (pip install simplemma)") from None
            self.simplemma = simplemma

    def _word(self, m: re.Match) -> str:
        word = m.group()
        if self.cfg.remove_stop_words and word.lower() in ENGLISH_STOP_WORDS:
            return ""
        if self.cfg.lemmatize:
            word = self.simplemma.lemmatize(word, lang=self.cfg.language)
        if self.stemmer is not None:
            word = self.stemmer.stemWord(word)
        return word.lower() if self.cfg.lowercase else word

    def apply(self, doc, rec: Record):
        text = _WORD.sub(self._word, doc.text)
        if self.cfg.remove_stop_words:
            text = re.sub(r"[ \t]{2,}", " ", text).strip()
        if text != doc.text:
            rec.count("docs_changed")
        doc.text = text
        return doc
