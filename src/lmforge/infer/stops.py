"""Stop strings that may span several tokens.

Text is released only up to the point where it cannot be the start of a stop
string: a suffix that is a prefix of some stop string is held back until the
next token decides it. Stopping truncates before the stop string, as OpenAI does.
"""

from __future__ import annotations


class StopMatcher:
    def __init__(self, stops: tuple[str, ...]):
        self.stops = stops
        self.pending = ""     # decoded text not yet released

    def push(self, text: str) -> tuple[str, bool]:
        """Add decoded text; return (text safe to release, whether a stop string was hit)."""
        if not self.stops:
            return text, False
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[:min(hits)], ""
            return out, True
        hold = self._held_suffix()
        out = self.pending[:len(self.pending) - hold]
        self.pending = self.pending[len(out):]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out

    def _held_suffix(self) -> int:
        """Length of the longest suffix of `pending` that starts some stop string."""
        best = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(self.pending)), best, -1):
                if s.startswith(self.pending[-n:]):
                    best = n
                    break
        return best
