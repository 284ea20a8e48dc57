"""Unicode and whitespace normalisation; repairs invalid UTF-8 and counts what it changed.

Leading indentation is kept (it is meaning in code and poetry); only runs of spaces inside
a line, trailing spaces, control characters and long runs of blank lines are tidied.
"""

from __future__ import annotations

import re
import unicodedata

from lmforge.data.config import NormalizeConfig
from lmforge.data.steps import LONE_SURROGATE, Record, Step

# C0/C1 controls except tab and newline, plus invisible zero-width marks and the BOM.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\u200b\u2060\ufeff]")
_CR = re.compile(r"\r\n?|\x85|\u2028|\u2029")
_INNER_SPACES = re.compile(r"[ \t\u00a0]{2,}(?=\S)")   # starts with a class: fast to scan for
_ASCII_CONTROL = bytes(c for c in range(128) if _CONTROL.match(chr(c)))   # the same, as bytes


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
        # Each regex runs only when a cheap test (a substring search, a bytes translation)
        # shows it can match: most text is clean, and the regex engine scans it far slower.
        text = doc.text
        is_ascii = text.isascii()
        if not is_ascii:
            text, n = LONE_SURROGATE.subn("\ufffd", text)
            if n:
                rec.count("invalid_utf8_bytes", n)
            if not unicodedata.is_normalized(self.cfg.form, text):
                text = unicodedata.normalize(self.cfg.form, text)
                rec.count("unicode_normalized")
        if not is_ascii or len(text.encode("ascii").translate(None, _ASCII_CONTROL)) < len(text):
            text, n = _CONTROL.subn("", text)
            if n:
                rec.count("control_chars", n)
        if not is_ascii or "\r" in text:
            text = _CR.sub("\n", text)
        text = "\n".join([line.rstrip(" \t\u00a0") for line in text.split("\n")])    # trailing spaces
        if self.cfg.collapse_spaces and ("  " in text or "\t" in text or "\u00a0" in text):
            text = _INNER_SPACES.sub(_inner_space, text)
        if self.blank_repl + "\n" in text:
            text = self.blank_run.sub(self.blank_repl, text)
        text = text.strip("\n")
        if text != doc.text:
            rec.count("docs_changed")
        doc.text = text
        return doc
