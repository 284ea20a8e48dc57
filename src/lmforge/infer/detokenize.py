"""Incremental detokenization that never emits half a character.

Byte-level BPE tokens can split a UTF-8 character; decoding such a prefix
yields U+FFFD. We decode the tokens since the previous release (plus the
release before it, as context for decoders that treat a leading token
specially) and emit new text only once it no longer ends in a replacement
character. The cost per token stays constant however long the text grows.
"""

from __future__ import annotations

from tokenizers import Tokenizer


class IncrementalDecoder:
    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True):
        self.tok = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = []
        self.prefix = 0   # start of the decode window
        self.read = 0     # tokens before this index have been released as text

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (possibly empty)."""
        self.ids.append(token_id)
        before = self.tok.decode(self.ids[self.prefix:self.read], skip_special_tokens=self.skip)
        after = self.tok.decode(self.ids[self.prefix:], skip_special_tokens=self.skip)
        # a UTF-8 character spans at most 4 bytes, so 4 held tokens still ending in U+FFFD
        # mean the model produced invalid bytes: release them rather than stall the stream
        incomplete = after.endswith("\ufffd") and len(self.ids) - self.read < 4
        if len(after) <= len(before) or incomplete:
            return ""
        self.prefix = self.read
        self.read = len(self.ids)
        return after[len(before):]

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        before = self.tok.decode(self.ids[self.prefix:self.read], skip_special_tokens=self.skip)
        after = self.tok.decode(self.ids[self.prefix:], skip_special_tokens=self.skip)
        self.prefix = self.read = len(self.ids)
        return after[len(before):]
