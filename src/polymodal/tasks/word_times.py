"""Word times from Whisper (faster-whisper's word timestamps), snapped to the speech onset.

`decode_words` runs one ``WhisperModel.transcribe`` call on a clip of at most one window
(English, no VAD, no conditioning on earlier text, optional initial prompt) and returns its
`Word` s with their probabilities; each start is moved to where the speech begins and words
after the last speech are dropped (`onset_finder`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from polymodal.tasks.subtitles import Word

SAMPLE_RATE = 16000
ONSET_DB = 30.0  # word times: a start in audio this far below the piece's loudest 10 ms moves on


def onset_finder(wav: np.ndarray) -> Any:
    """``f(start, end)``: the first 10 ms frame in ``[start, end)`` (seconds) louder than
    `ONSET_DB` below the loudest frame of ``wav``; ``start`` where there is none, but None
    for a word after the last speech (Whisper repeating words past the end of it: dropped;
    dropping every word over silence lost real words, 364 -> 360 matched). Whisper's
    alignment gives the silence before a word to the word (the first word of a clip starts at
    0 s); speech starts where the energy rises."""
    hop = SAMPLE_RATE // 100
    n = len(wav) // hop
    if n == 0:
        return lambda start, end: start  # too short to tell: keep
    energy = (wav[:n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(axis=1)
    loud = energy > energy.max() * 10 ** (-ONSET_DB / 10)
    last = int(np.flatnonzero(loud)[-1]) if loud.any() else -1  # the last frame with speech

    def onset(start: float, end: float) -> float | None:
        i0 = max(0, int(start * 100))
        hits = np.flatnonzero(loud[i0:max(i0 + 1, int(np.ceil(end * 100)))])
        if hits.size:
            return (i0 + int(hits[0])) / 100
        return None if i0 > last else start
    return onset


def decode_words(whisper: Any, wav: np.ndarray, t0: float = 0.0, beam: int = 1,
                 prompt: str | None = None) -> list[Word]:
    """Words of one clip (at most one window) of 16 kHz audio starting ``t0`` seconds into its
    file, with times in the file and Whisper's word probabilities (``whisper``: a
    faster-whisper ``WhisperModel``)."""
    t1 = t0 + len(wav) / SAMPLE_RATE
    segs, _ = whisper.transcribe(
        np.ascontiguousarray(wav, np.float32), language="en", beam_size=beam,
        word_timestamps=True, vad_filter=False, condition_on_previous_text=False,
        initial_prompt=prompt)
    onset = onset_finder(wav)
    out: list[Word] = []
    for seg in segs:
        for w in seg.words or ():
            at = onset(float(w.start), float(w.end))
            if w.word.strip() and at is not None:  # None: no speech under the word
                start = min(t0 + at, t1)
                out.append(Word(start, min(max(t0 + float(w.end), start), t1), w.word.strip(),
                                float(w.probability)))
    return out


__all__ = ["ONSET_DB", "decode_words", "onset_finder"]
