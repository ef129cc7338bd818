"""Timed transcript segments and their SubRip (``.srt``) / WebVTT (``.vtt``) files.

Cues are numbered from 1 (SRT), times are ``HH:MM:SS,mmm`` (SRT) or ``HH:MM:SS.mmm`` (VTT),
rounded to the millisecond. Segments are written in time order, each starting no earlier than
the previous one ended (Whisper's windows can overlap by a few ms), with ``end >= start``;
empty texts are left out (a blank line would end the cue) and ``-->`` inside a text is written
``->`` so that it cannot be read as a time line. Files are written atomically.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import UsageError

FORMATS = ("srt", "vtt")
# word-timed cues (`word_cues`), after common subtitle guidance (BBC / Netflix style guides):
CUE_PAUSE_SECONDS = 0.3  # a silence at least this long between two words starts a new cue
MAX_CUE_CHARS = 42  # one subtitle line
MAX_CUE_SECONDS = 7.0  # the longest a cue stays on screen


@dataclass(frozen=True)
class Word:
    """One recognised word, its time in the audio (seconds from the start) and, from Whisper,
    its probability."""

    start: float
    end: float
    text: str
    probability: float | None = None  # Whisper's probability of the word, where known

    def to_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "word": self.text}


@dataclass(frozen=True)
class Segment:
    """A piece of transcript and where it lies in the audio (seconds from the start); with
    word-timed cues also its words and their times."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()

    def to_dict(self) -> dict:
        d = {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}
        if self.words:
            d["words"] = [w.to_dict() for w in self.words]
        return d


def word_cues(words: Sequence[Word], pause: float = CUE_PAUSE_SECONDS,
              max_chars: int = MAX_CUE_CHARS, max_seconds: float = MAX_CUE_SECONDS
              ) -> list[Segment]:
    """Subtitle cues from timed words (in time order): a new cue starts at a pause of at least
    ``pause`` seconds, or where the next word would make the cue longer than ``max_chars``
    characters or ``max_seconds`` seconds (a single word longer than that is a cue alone)."""
    out: list[Segment] = []
    cur: list[Word] = []

    def close() -> None:
        if cur:
            out.append(Segment(cur[0].start, cur[-1].end, " ".join(w.text for w in cur),
                               tuple(cur)))
            cur.clear()

    for w in sorted((w for w in words if w.text.strip()), key=lambda w: w.start):
        if cur and (w.start - cur[-1].end >= pause
                    or len(" ".join(x.text for x in cur)) + 1 + len(w.text) > max_chars
                    or w.end - cur[0].start > max_seconds):
            close()
        cur.append(w)
    close()
    return out


def timestamp(seconds: float, fmt: str = "srt") -> str:
    """``HH:MM:SS,mmm`` (srt) or ``HH:MM:SS.mmm`` (vtt)."""
    ms = max(0, int(round(seconds * 1000)))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{',' if fmt == 'srt' else '.'}{ms:03d}"


def clean_cues(segments: Sequence[Segment]) -> list[Segment]:
    """Segments as they are written: non-empty text on one line, times monotone (see the
    module docstring)."""
    out: list[Segment] = []
    prev_end = 0.0
    for s in sorted(segments, key=lambda s: s.start):
        text = " ".join(s.text.replace("-->", "->").split())
        if not text:
            continue
        start = max(float(s.start), prev_end)
        end = max(float(s.end), start)
        out.append(Segment(start, end, text, s.words))
        prev_end = end
    return out


def subtitle_text(segments: Sequence[Segment], fmt: str) -> str:
    """The whole ``.srt`` / ``.vtt`` file for ``segments``."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown subtitle format '{fmt}'; valid: {', '.join(FORMATS)}")
    cues = []
    for n, s in enumerate(clean_cues(segments), 1):
        times = f"{timestamp(s.start, fmt)} --> {timestamp(s.end, fmt)}"
        cues.append(f"{n}\n{times}\n{s.text}\n" if fmt == "srt" else f"{times}\n{s.text}\n")
    body = "\n".join(cues)
    return body if fmt == "srt" else "WEBVTT\n\n" + body


def subtitle_paths(audio: Sequence[str | Path], out_dir: str | Path, fmt: str) -> list[Path]:
    """``out_dir/<audio stem>.<fmt>`` for each file; a `UsageError` naming both inputs when
    two would write the same file (checked before any work)."""
    seen: dict[Path, str] = {}
    out = []
    for a in audio:
        p = Path(out_dir) / f"{Path(a).stem}.{fmt}"
        if p in seen:
            raise UsageError(f"--{fmt}: {seen[p]} and {a} would both write {p}; transcribe them "
                             f"in separate runs or rename one")
        seen[p] = str(a)
        out.append(p)
    return out


def write_subtitles(path: str | Path, segments: Sequence[Segment], fmt: str) -> Path:
    """Write one subtitle file atomically (folders created)."""
    return atomic_write_text(path, subtitle_text(segments, fmt))


__all__ = ["CUE_PAUSE_SECONDS", "FORMATS", "MAX_CUE_CHARS", "MAX_CUE_SECONDS", "Segment", "Word",
           "clean_cues", "word_cues", "subtitle_paths", "subtitle_text", "timestamp",
           "write_subtitles"]
