"""Personal data and secrets -> typed placeholders (<EMAIL>, <PHONE>, ...).

Each kind is a regular expression plus, where one exists, a checksum or parser that
rejects look-alikes (Luhn for cards, mod-97 for IBANs, the ipaddress module for IPs), so
version numbers and ordinary digits survive. Only public IP addresses are redacted:
127.0.0.1 or 192.168.0.1 in documentation identify no one.
"""

from __future__ import annotations

import ipaddress
import re

from lmforge.data.config import PiiConfig
from lmforge.data.steps import Record, Step

PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP_ADDRESS>",
                "credit_card": "<CREDIT_CARD>", "iban": "<IBAN>", "secret": "<SECRET>"}

# Patterns start with a character class or literal (fast to scan for; a repeat such as
# [A-Z]{2} is not); what may not stand just before a match is checked in Python, on matches
# only (see _left_ok).
_EMAIL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
# International: +CC then digit groups split by spaces or dashes.
_PHONE_INTL = re.compile(r"\+\d{1,3}[ -]?(?:\(\d{1,4}\)[ -]?)?\d{1,4}(?:[ -]?\d{2,4}){1,4}(?![\w-]|\.\d)")
# North-American: (555) 123-4567, 555-123-4567. One class reads the first character and the
# lookbehinds tell which it was, so this pattern starts with a class too.
_PHONE_NA = re.compile(r"[(\d](?:(?<=\()\d{3}\)[ .-]?|(?<=\d)\d{2}[.-])\d{3}[.-]\d{4}(?![\w-]|\.\d)")
_IPV4 = re.compile(r"\d\d{0,2}(?:\.\d{1,3}){3}(?![\w.]|\.\d)")
_IPV6 = re.compile(r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]{1,35}(?![\w:])")
_CARD = re.compile(r"\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"[A-Z][A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
# Known key formats. Each starts with a literal, which the regex engine finds quickly.
_SECRETS = [re.compile(p) for p in (
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"AKIA[0-9A-Z]{16}\b",                              # AWS access key id
    r"gh[pousr]_[A-Za-z0-9]{36,}\b",                    # GitHub tokens
    r"xox[abprs]-[A-Za-z0-9-]{10,}\b",                  # Slack tokens
    r"AIza[0-9A-Za-z_-]{35}\b",                         # Google API keys
    r"sk-(?:proj-)?[A-Za-z0-9_-]{20,}\b",               # OpenAI-style keys
    r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",   # JWTs
)]
# `api_key = "..."`, `password: ...`: only the value (group "value") is replaced.
_SECRET_ASSIGN = re.compile(r"(?i:\b(?:api[_-]?key|secret|token|password|passwd)\b)[ \t]*[=:][ \t]*['\"]?"
                            r"(?P<value>[A-Za-z0-9_\-/+]{16,})")


def _left_ok(m: re.Match, bad: str) -> bool:
    """True when the character before the match is not a letter/digit/_ nor one of `bad`."""
    at = m.start()
    return at == 0 or not (m.string[at - 1].isalnum() or m.string[at - 1] in bad or m.string[at - 1] == "_")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(m: re.Match) -> bool:
    if not _left_ok(m, "-"):
        return False
    digits = re.sub(r"\D", "", m.group())
    # Issuer prefixes: Amex 34/37, Visa 4, Mastercard 2/5, Discover/UnionPay 6.
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and _luhn(digits)


def _iban_ok(m: re.Match) -> bool:
    if not _left_ok(m, ""):
        return False
    s = m.group().replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _phone_ok(m: re.Match) -> bool:
    return _left_ok(m, "+.") and 7 <= sum(ch.isdigit() for ch in m.group()) <= 15


def _public_ip(m: re.Match) -> bool:
    if not _left_ok(m, ":."):
        return False
    s = m.group()
    if ":" in s and sum(ch != ":" for ch in s) < 6:
        return False     # 'a::b', 'de::f': C++ scopes and the like, not addresses people use
    try:
        return ipaddress.ip_address(s).is_global
    except ValueError:
        return False


# (kind, pattern, validity check, strings one of which the lower-cased text must contain for
# the pattern to be tried, whether a match holds a digit): cheap tests that skip most regex scans.
# Order matters: secrets and cards before phones, so a card number is not half-read as a phone.
_RULES = [*(("secret", p, None, ("",), False) for p in _SECRETS),
          ("secret", _SECRET_ASSIGN, None, ("key", "secret", "token", "passw"), False),
          ("email", _EMAIL, lambda m: _left_ok(m, ".+-"), ("@",), False), ("iban", _IBAN, _iban_ok, ("",), True),
          ("credit_card", _CARD, _card_ok, ("",), True), ("ip", _IPV6, _public_ip, (":",), False),
          ("ip", _IPV4, _public_ip, (".",), True), ("phone", _PHONE_INTL, _phone_ok, ("+",), True),
          ("phone", _PHONE_NA, _phone_ok, ("",), True)]


def redact(text: str, kinds: list[str]) -> tuple[str, dict[str, int]]:
    """Replace every detected item with its placeholder; return (text, hits per kind)."""
    hits: dict[str, int] = {}
    lower = text.lower()
    # \d matches the digits of every script, so only ASCII text can be cleared by looking for 0-9.
    # Placeholders hold no digits: a text without any keeps none after each substitution.
    has_digit = not text.isascii() or any(d in text for d in "0123456789")
    for kind, pattern, check, needles, needs_digit in _RULES:
        if kind not in kinds or (needs_digit and not has_digit) or not any(n in lower for n in needles):
            continue

        def sub(m: re.Match, kind=kind, check=check) -> str:
            if check is not None and not check(m):
                return m.group()
            hits[kind] = hits.get(kind, 0) + 1
            if "value" in m.re.groupindex:
                text, start = m.group(), m.start()
                return text[:m.start("value") - start] + PLACEHOLDERS[kind] + text[m.end("value") - start:]
            return PLACEHOLDERS[kind]

        text = pattern.sub(sub, text)
    return text, hits


class Pii(Step):
    name = "pii"

    def __init__(self, cfg: PiiConfig):
        self.cfg = cfg

    def apply(self, doc, rec: Record):
        text, hits = redact(doc.text, self.cfg.kinds)
        for kind, n in hits.items():
            rec.count(kind, n)
        total = sum(hits.values())
        if self.cfg.max_hits and total > self.cfg.max_hits:
            rec.reason = f"{total} PII items > max_hits {self.cfg.max_hits}"
            return None
        doc.text = text
        return doc
