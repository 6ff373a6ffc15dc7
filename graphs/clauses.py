"""Cut a token stream into speakable clauses as soon as each one is complete.

Voice chat synthesizes every clause the moment the LLM finishes it (as LocalAI does), so the
first audio leaves long before the reply ends. Chinese punctuation ends a clause at once; ASCII
punctuation only when followed by white space (so "3.5" and "e.g." inside words stay whole);
a clause that grows past `max_chars` without punctuation is cut at its last space, or hard. The
first clause may have a lower limit (`first_max_chars`): speech starts sooner, the rest flows as usual.
"""

from __future__ import annotations

CJK_BREAKS = set("，。！？；：、…\n")
ASCII_BREAKS = set(",.!?;:")


class ClauseSplitter:
    def __init__(self, *, min_chars: int = 4, max_chars: int = 80, first_max_chars: int | None = None):
        self.min_chars, self.max_chars = min_chars, max_chars
        self._limit = first_max_chars or max_chars  # for the clause being built
        self._buffer = ""

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        clauses = []
        while (cut := self._next_cut()) is not None:
            clause, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
            if clause:
                clauses.append(clause)
                self._limit = self.max_chars
        return clauses

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def _next_cut(self) -> int | None:
        text = self._buffer
        for i, ch in enumerate(text):
            ends = ch in CJK_BREAKS or (ch in ASCII_BREAKS and i + 1 < len(text) and text[i + 1].isspace())
            if ends and len(text[: i + 1].strip()) >= self.min_chars:
                return i + 1
        if len(text) > self._limit:
            space = text.rfind(" ", self.min_chars, self._limit)
            return space + 1 if space > 0 else self._limit
        return None


def split_text(text: str, *, max_chars: int) -> list[str]:
    """A whole text as pieces of at most max_chars, cut at clause ends where possible."""
    splitter = ClauseSplitter(max_chars=max_chars)
    pieces: list[str] = []
    for clause in [*splitter.feed(text), *splitter.flush()]:
        if pieces and len(pieces[-1]) + len(clause) + 1 <= max_chars:
            pieces[-1] = f"{pieces[-1]} {clause}" if clause[0].isascii() else pieces[-1] + clause
        else:
            pieces.append(clause)
    return pieces
