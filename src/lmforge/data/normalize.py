"""Unicode and whitespace normalisation; repairs invalid UTF-8 and counts what it changed.

Leading indentation is kept (it is meaning in code and poetry); only runs of spaces inside
a line, trailing spaces, control characters and long runs of blank lines are tidied.
"""

from __future__ import annotations

import re
import unicodedata

from lmforge.data.config import NormalizeConfig
from lmforge.data.steps import Record, Step

# Lone surrogates are how undecodable bytes arrive (decoded with 'surrogateescape').
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0/C1 controls except tab and newline, plus invisible zero-width marks and the BOM.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\u200b\u2060\ufeff]")
_CR = re.compile(r"\r\n?|\x85|\u2028|\u2029")
_TRAILING = re.compile(r"[ \t\u00a0]+(?=\n|\Z)")
_INNER_SPACES = re.compile(r"[ \t\u00a0]{2,}(?=\S)")   # starts with a class: fast to scan for


def _inner_space(m: re.Match) -> str:
    at = m.start()
    return m.group() if at == 0 or m.string[at - 1] == "\n" else " "   # indentation stays


class Normalize(Step):
    name = "normalize"

    def __init__(self, cfg: NormalizeConfig):
        self.cfg = cfg
        self.blank_run = re.compile("\n{%d,}" % (cfg.max_blank_lines + 2))
        self.blank_repl = "\n" * (cfg.max_blank_lines + 1)

    def apply(self, doc, rec: Record):
        text = doc.text
        if not text.isascii():
            text, n = _SURROGATE.subn("\ufffd", text)
            if n:
                rec.count("invalid_utf8_bytes", n)
            if not unicodedata.is_normalized(self.cfg.form, text):
                text = unicodedata.normalize(self.cfg.form, text)
                rec.count("unicode_normalized")
        text, n = _CONTROL.subn("", text)
        if n:
            rec.count("control_chars", n)
        text = _CR.sub("\n", text)
        text = _TRAILING.sub("", text)
        if self.cfg.collapse_spaces:
            text = _INNER_SPACES.sub(_inner_space, text)
        text = self.blank_run.sub(self.blank_repl, text).strip("\n")
        if text != doc.text:
            rec.count("docs_changed")
        doc.text = text
        return doc
