"""How well subtitles match a timed reference: word accuracy and start-time error.

`parse_srt` reads a SubRip file into ``(start, end, text)`` cues. `subtitle_accuracy` scores
cues against reference words with times (e.g. av-digits-video's ``timing`` column:
``{word, audio_start_s, ...}``):

* hypothesis words = the cues' words after the transcript normaliser (`textgen.
  normalize_transcript`: lower case, punctuation dropped, digits spelled out); each word gets
  a time: its cue's start for the cue's first word, and for the later words of a cue a time
  placed linearly over the cue by character offset (an SRT keeps no time per word);
* the hypothesis is aligned to the reference words with a minimum edit-distance alignment
  (substitution / insertion / deletion cost 1; of the cheapest, the one with most
  matches);
* word accuracy = matched words / reference words; start error = |hypothesis word time −
  reference start| over the matched words (mean and median, seconds).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from polymodal.core.errors import DataError

_TIME = re.compile(r"(\d+):(\d{2}):(\d{2})[,.](\d{3})")


def _seconds(t: str, where: str) -> float:
    m = _TIME.fullmatch(t.strip())
    if not m:
        raise DataError(f"not an SRT time: '{t.strip()}'", where)
    h, mi, s, ms = (int(x) for x in m.groups())
    return h * 3600 + mi * 60 + s + ms / 1000


def parse_srt(text: str, where: str = "srt") -> list[tuple[float, float, str]]:
    """``(start, end, text)`` of each cue of a SubRip file (text lines joined by a space);
    a malformed time line is a `DataError` naming ``where``."""
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = [x for x in block.split("\n") if x.strip()]
        k = next((j for j, x in enumerate(lines) if "-->" in x), None)
        if k is None:
            continue
        a, _, b = lines[k].partition("-->")
        cues.append((_seconds(a, where), _seconds(b.split()[0] if b.split() else b, where),
                     " ".join(x.strip() for x in lines[k + 1:])))
    return cues


def timed_hypothesis(cues: Sequence[tuple[float, float, str]]) -> list[tuple[str, float]]:
    """Normalised words of the cues with a time each (see the module docstring)."""
    from polymodal.metrics.textgen import normalize_transcript

    out = []
    for start, end, text in cues:
        words = normalize_transcript(text).split()
        total = sum(len(w) + 1 for w in words)
        pos = 0
        for w in words:
            out.append((w, start + (end - start) * pos / max(total, 1)))
            pos += len(w) + 1
    return out


def align_words(hyp: Sequence[str], ref: Sequence[str]) -> list[tuple[int, int]]:
    """``(hyp index, ref index)`` of the equal words on a minimum edit-distance alignment;
    among the alignments of least cost, one with the most equal words."""
    n, m = len(hyp), len(ref)
    # d[i][j] = (edits, -matches) of the best alignment of hyp[:i] with ref[:j]
    d = [[(i + j, 0) if i == 0 or j == 0 else (0, 0) for j in range(m + 1)] for i in range(n + 1)]

    def step(i: int, j: int) -> list[tuple[tuple[int, int], int, int]]:
        same = hyp[i - 1] == ref[j - 1]
        (c, k), (c1, k1), (c2, k2) = d[i - 1][j - 1], d[i - 1][j], d[i][j - 1]
        return [((c + (not same), k - same), i - 1, j - 1), ((c1 + 1, k1), i - 1, j),
                ((c2 + 1, k2), i, j - 1)]

    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(x[0] for x in step(i, j))
    pairs, i, j = [], n, m
    while i > 0 and j > 0:
        _, pi, pj = next(x for x in step(i, j) if x[0] == d[i][j])
        if (pi, pj) == (i - 1, j - 1) and hyp[i - 1] == ref[j - 1]:
            pairs.append((i - 1, j - 1))
        i, j = pi, pj
    return pairs[::-1]


@dataclass
class SubtitleScore:
    """Matched / reference words and the start errors (seconds) of the matched words."""

    matched: int
    reference: int
    errors: list[float]

    @property
    def accuracy(self) -> float:
        return self.matched / self.reference if self.reference else 0.0

    @property
    def mean_error(self) -> float:
        return sum(self.errors) / len(self.errors) if self.errors else float("nan")

    @property
    def median_error(self) -> float:
        e = sorted(self.errors)
        if not e:
            return float("nan")
        return e[len(e) // 2] if len(e) % 2 else (e[len(e) // 2 - 1] + e[len(e) // 2]) / 2

    def __add__(self, other: "SubtitleScore") -> "SubtitleScore":
        return SubtitleScore(self.matched + other.matched, self.reference + other.reference,
                             self.errors + other.errors)


def subtitle_accuracy(cues: Sequence[tuple[float, float, str]], timing: Sequence[dict],
                      word_key: str = "word", start_key: str = "audio_start_s"
                      ) -> SubtitleScore:
    """Score one file's cues against its reference words ``timing`` (dicts with ``word_key``
    and ``start_key``)."""
    from polymodal.metrics.textgen import normalize_transcript

    ref: list[tuple[str, float]] = []
    for t in timing:
        for w in normalize_transcript(str(t[word_key])).split():
            ref.append((w, float(t[start_key])))
    hyp = timed_hypothesis(cues)
    pairs = align_words([w for w, _ in hyp], [w for w, _ in ref])
    return SubtitleScore(len(pairs), len(ref), [abs(hyp[i][1] - ref[j][1]) for i, j in pairs])


__all__ = ["SubtitleScore", "align_words", "parse_srt", "subtitle_accuracy", "timed_hypothesis"]
