"""Transcript -> segments, words, SRT and WebVTT (OpenAI `verbose_json`, `srt`, `vtt` formats).

Paraformer gives one [start_ms, end_ms] per recognized unit (a Chinese character or an English
word), while punctuation comes from a separate model. Units of the punctuated text are therefore
matched to timestamps in order; when the counts disagree, times are spread proportionally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNIT = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[A-Za-z0-9']+(?:@@)?")
SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|(?<=[.](?=\s))")


@dataclass
class Segment:
    start_s: float
    end_s: float
    text: str


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in SENTENCE_END.split(text) if part.strip()]


def words_with_times(text: str, timestamps: list[tuple[int, int]] | None) -> list[dict]:
    """OpenAI `words`: only when every unit of the text has its own timestamp."""
    units = UNIT.findall(text)
    if not timestamps or len(units) != len(timestamps):
        return []
    return [{"word": unit, "start": start / 1000, "end": end / 1000} for unit, (start, end) in zip(units, timestamps)]


def segments(text: str, timestamps: list[tuple[int, int]] | None, duration_s: float) -> list[Segment]:
    sentences = split_sentences(text)
    if not sentences:
        return []
    counts = [max(len(UNIT.findall(s)), 1) for s in sentences]
    total = sum(counts)
    result, done = [], 0
    for sentence, count in zip(sentences, counts):
        first, last = done, done + count - 1
        if timestamps and len(timestamps) == total:
            start, end = timestamps[first][0] / 1000, timestamps[last][1] / 1000
        else:  # no or mismatched timestamps: spread the sentences over the audio by length
            start, end = duration_s * first / total, duration_s * (last + 1) / total
        result.append(Segment(round(start, 3), round(end, 3), sentence))
        done += count
    return result


def _clock(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(segs: list[Segment]) -> str:
    return "".join(
        f"{i}\n{_clock(s.start_s, ',')} --> {_clock(s.end_s, ',')}\n{s.text}\n\n" for i, s in enumerate(segs, 1))


def to_vtt(segs: list[Segment]) -> str:
    body = "".join(f"{_clock(s.start_s, '.')} --> {_clock(s.end_s, '.')}\n{s.text}\n\n" for s in segs)
    return "WEBVTT\n\n" + body
