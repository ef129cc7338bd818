"""Speech -> text with the bundled Whisper tiny.en (CTranslate2, through faster-whisper), offline.

Nothing is cut: every file is transcribed in full, up to ``limits.MAX_TRANSCRIBE_SECONDS``
(4 h; a longer file is refused from its header, before any decoding, with its length and the
limit). Each file gets its text and timed `Segment` s (start, end, text; `polymodal.tasks.
subtitles` writes them as SRT / VTT).

* Clips of at most one Whisper window (30 s) are decoded to 16 kHz mono, turned into the 30 s
  log-mel window and decoded in batches with CTranslate2's ``Whisper.generate`` (greedy by
  default, no timestamps, English): several times faster on a CPU than one
  ``WhisperModel.transcribe`` call per clip. Such a clip is one segment, 0 s to its duration.
  Backend / precision as for the ``whisper-tiny`` features (default: the encoder in torch fp32
  with a cached silent window, CTranslate2 int8 decoding its output; see
  ``benchmarks/encode_audio.py``).
* Longer audio is cut into chunks of at most ``CHUNK_SECONDS`` (10 s), each ending at the
  quietest 100 ms of its last ``SPLIT_SEARCH_SECONDS`` (so no word is split), and the chunks go
  through the same batched path; each chunk is one timed segment (a subtitle cue). Every sample
  belongs to exactly one chunk, so nothing is transcribed twice or skipped.
  benchmarks/transcribe_long.py compares faster-whisper's long-form ``transcribe`` (30 s
  windows advanced by predicted timestamps) on 75.8 s of FSDD digits (87 words): in one of two
  runs its timestamps ended before its text did and the next window re-read the audio (WER
  0.345, 115 words; the other run 0.057); the chunks: WER 0.011 both times, `ratio 3.87x`
  (long-form wall / chunks wall, int8).
* ``cues="words"`` (``--cues words``): word times from faster-whisper (`Transcriber.
  timed_words`), starts snapped to the speech onset, words after the last speech dropped,
  cues by `subtitles.word_cues`. av-digits-video test split (88 clips, 399 words; scripts/
  subtitle_accuracy.py): word accuracy 0.744, mean |start error| 0.084 s (chunks: 0.684,
  0.277 s); with ``--prompt "Zero, one, two, ..., nine."``: 0.912, 0.072 s.
* ``context="batch"`` (``--context batch``, word cues): a second pass prompted with the words
  recognised confidently across the batch (`polymodal.tasks.batch_context`).
* Memory stays bounded whatever the length: the file is decoded in blocks of
  ``BLOCK_SECONDS`` (10 min, one block of audio and its mel in memory), each cut at the
  quietest 100 ms of its last ``SPLIT_SEARCH_SECONDS`` so that no word is split.

``transcribe_manifest`` writes a copy of a manifest with a new transcript column (atomic);
audio that does not decode, or is over the limit, leaves the cell empty and is reported with
its row.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from polymodal.core.errors import DecodeError, PolymodalError, Problem, UsageError
from polymodal.data import limits
from polymodal.features.encoders.asr import WhisperDecoder, prompt_id
from polymodal.features.encoders.backends import backend_id
from polymodal.tasks.subtitles import Segment, Word
from polymodal.tasks.word_times import decode_words

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0  # one Whisper window: clips up to this long are batched
BLOCK_SECONDS = 600.0  # longer audio is decoded and transcribed this much at a time
CHUNK_SECONDS = 10.0  # ... in chunks of at most this, cut in pauses (one subtitle cue each)
SPLIT_SEARCH_SECONDS = 5.0
CUES = ("chunks", "words")  # one cue per clip / chunk, or cues built from word times


@dataclass
class TranscribeResult:
    """Per file: the text and segments (None where the file could not be used), the length in
    seconds (None where the header could not be read); and the problems met."""

    texts: list[str | None]
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    segments: list[list[Segment] | None] = field(default_factory=list)
    durations: list[float | None] = field(default_factory=list)
    glossary: list[str] | None = None  # context="batch": the batch's glossary ...
    coverage: float | None = None  # ... its share of the confident words ...
    context_prompt: str | None = None  # ... the 2nd pass's prompt (None: no 2nd pass) ...
    second_pass: int = 0  # ... and the files decoded again with it

    @property
    def ok(self) -> int:
        return sum(t is not None for t in self.texts)


class Transcriber(WhisperDecoder):
    """Whisper tiny.en: batched greedy / beam decoding of short clips (`WhisperDecoder`),
    pause-cut chunks of longer audio (see the module docstring)."""

    @property
    def id(self) -> str:
        return (f"whisper-tiny.en|{self.encoder.model_dir.name}|beam={self.beam}"
                f"|short=batched-window|long=pause-cut-{CHUNK_SECONDS:g}s-chunks"
                f"{prompt_id(self.initial_prompt)}{backend_id(self.encoder.resolved)}")

    def load(self, path: str | Path) -> np.ndarray:
        """16 kHz mono waveform of one (short) file (raises `DecodeError`)."""
        return self.encoder.prepare(path)

    def transcribe_long(self, path: str | Path) -> list[Segment]:
        """Segments of a whole file: decoded block by block (`audio_blocks`), each block cut
        into pause-ended chunks (`chunk_bounds`) transcribed in batches; one segment a chunk
        with text."""
        out: list[Segment] = []
        for offset, wav in audio_blocks(path):
            out.extend(self.segments(wav, offset))
        return out

    def segments(self, wav: np.ndarray, offset: float = 0.0) -> list[Segment]:
        """Timed segments of one 16 kHz waveform of any length held in memory (a video's audio
        track): pause-ended chunks (`chunk_bounds`), one segment a chunk with text."""
        bounds = chunk_bounds(wav)
        texts = self.transcribe_waves([wav[a:b] for a, b in bounds])
        return [Segment(offset + a / SAMPLE_RATE, offset + b / SAMPLE_RATE, t)
                for (a, b), t in zip(bounds, texts) if t]

    def timed_words(self, wav: np.ndarray, offset: float = 0.0,
                    prompt: str | None = None) -> list[Word]:
        """Words of one 16 kHz waveform with their times (``offset`` + seconds into ``wav``)
        and probabilities: faster-whisper's word timestamps (cross-attention DTW over the
        alignment heads), one ``WhisperModel.transcribe`` call per clip of at most one
        window, per pause-cut chunk (`chunk_bounds`) of longer audio (`word_times.
        decode_words`: English, no VAD, no conditioning on earlier text, starts snapped to
        the speech onset). ``prompt``: the initial prompt (default: the transcriber's)."""
        bounds = [(0, len(wav))] if len(wav) <= WINDOW_SECONDS * SAMPLE_RATE else chunk_bounds(wav)
        prompt = self.initial_prompt if prompt is None else prompt
        return [w for a, b in bounds
                for w in decode_words(self.encoder.whisper, wav[a:b], offset + a / SAMPLE_RATE,
                                      self.beam, prompt)]

    def file_words(self, path: str | Path, duration: float,
                   prompt: str | None = None) -> list[Word]:
        """`timed_words` of a whole audio or video file (long audio block by block)."""
        if is_video(path):
            from polymodal.data.video import read_audio_track

            wav = read_audio_track(path, SAMPLE_RATE, max_seconds=None)
            return self.timed_words(wav, prompt=prompt)
        if duration > WINDOW_SECONDS:
            return [w for off, wav in audio_blocks(path)
                    for w in self.timed_words(wav, off, prompt)]
        return self.timed_words(self.load(path), prompt=prompt)


def chunk_bounds(wav: np.ndarray, seconds: float | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges covering ``wav`` in order, each at most ``seconds``
    (default `CHUNK_SECONDS`) long and, but the last, ending at the quietest 100 ms of its last
    `SPLIT_SEARCH_SECONDS` (at most half the chunk)."""
    size = int(SAMPLE_RATE * (CHUNK_SECONDS if seconds is None else seconds))
    search = min(SPLIT_SEARCH_SECONDS, size / SAMPLE_RATE / 2)
    out, start = [], 0
    while len(wav) - start > size:
        end = start + max(1, _quiet_split(wav[start:start + size], search))
        out.append((start, end))
        start = end
    out.append((start, len(wav)))
    return out


def audio_blocks(path: str | Path, block_seconds: float | None = None
                 ) -> Iterator[tuple[float, np.ndarray]]:
    """``(start in seconds, 16 kHz mono block)`` covering the whole file in order: blocks of
    ``block_seconds`` (default `BLOCK_SECONDS`), each but the last cut at the quietest 100 ms
    of its last `SPLIT_SEARCH_SECONDS`; the next block starts there. Raises `DecodeError`."""
    import soundfile as sf

    from polymodal.data.audio import read_mono, resample

    block = float(BLOCK_SECONDS if block_seconds is None else block_seconds)
    try:
        with sf.SoundFile(str(path)) as f:
            rate, start = int(f.samplerate), 0
            while True:
                f.seek(start)
                mono = read_mono(f, max(1, int(block * rate)), path)
                if not mono.size:
                    return
                wav = resample(mono, rate, SAMPLE_RATE)
                if len(mono) < int(block * rate) or start + len(mono) >= f.frames:
                    yield start / rate, wav
                    return
                cut = _quiet_split(wav, min(SPLIT_SEARCH_SECONDS, block / 2))
                yield start / rate, wav[:cut]
                start += max(1, round(cut * rate / SAMPLE_RATE))
    except PolymodalError:
        raise
    except Exception as e:
        raise DecodeError(str(path), f"cannot decode audio ({' '.join(str(e).split())})"
                          ) from None


def _quiet_split(wav: np.ndarray, search_seconds: float) -> int:
    """Sample index at the centre of the quietest 100 ms frame in the last ``search_seconds``."""
    hop = SAMPLE_RATE // 10
    n = max(1, int(search_seconds * SAMPLE_RATE) // hop)
    tail = wav[len(wav) - n * hop:]
    if len(tail) < hop:
        return len(wav)
    energy = (tail[: len(tail) // hop * hop].reshape(-1, hop) ** 2).mean(axis=1)
    return len(wav) - len(tail) + int(energy.argmin()) * hop + hop // 2


def too_long(seconds: float) -> str | None:
    """The refusal for audio over ``limits.MAX_TRANSCRIBE_SECONDS`` (read when called)."""
    limit = limits.MAX_TRANSCRIBE_SECONDS
    if seconds <= limit:
        return None
    return (f"audio is {seconds:,.1f} s long, over the limit of {limit:,g} s for transcription "
            f"(MAX_TRANSCRIBE_SECONDS); split the file")


def transcribe(paths: Sequence[str | Path], transcriber: Transcriber | None = None,
               progress: bool = True, rows: Sequence[int] | None = None,
               file: str | None = None, column: str | None = None,
               beam: int = 1, backend: str = "auto", precision: str = "auto",
               cues: str = "chunks", prompt: str | None = None,
               context: str = "none") -> TranscribeResult:
    """Transcribe audio files in full. Every header is checked first (before the model is
    loaded); files that do not decode or are over the limit give ``None`` and a `Problem`
    (``rows`` / ``file`` / ``column`` locate it in a manifest); the rest go on. ``cues``:
    ``chunks`` = one segment per short clip / pause-cut chunk (batched decoding); ``words`` =
    segments built from word times (`Transcriber.timed_words`, `subtitles.word_cues`), each
    carrying its words. ``prompt``: Whisper's initial prompt (`WhisperDecoder`). ``context``:
    ``none``, or ``batch`` (word cues only) = a second pass prompted with the words recognised
    confidently across the files (`polymodal.tasks.batch_context`)."""
    from polymodal.tasks.batch_context import CONTEXTS

    if beam < 1:
        raise UsageError(f"beam must be at least 1, got {beam}")
    if cues not in CUES:
        raise UsageError(f"unknown cues '{cues}'; valid: {', '.join(CUES)}")
    if context not in CONTEXTS:
        raise UsageError(f"unknown context '{context}'; valid: {', '.join(CONTEXTS)}")
    if context != "none" and cues != "words":
        raise UsageError(f"context '{context}' needs word cues (--cues words): it builds on "
                         f"Whisper's word probabilities")
    from polymodal.features.encoders.backends import resolve_backend
    from polymodal.features.encoders.whisper import WhisperEncoder

    resolve_backend(WhisperEncoder.name, WhisperEncoder.backends, WhisperEncoder.default_backend,
                    backend, precision)  # a bad setting fails before any file is read
    t0 = time.perf_counter()
    n = len(paths)
    res = TranscribeResult([None] * n, [], 0.0, [None] * n, [None] * n)

    def fail(i: int, reason: str) -> None:
        res.problems.append(Problem(file or str(paths[i]), rows[i] if rows is not None else None,
                                    column, reason))

    usable = []
    for i, p in enumerate(paths):
        try:
            res.durations[i] = _duration(p)
        except PolymodalError as e:
            fail(i, getattr(e, "reason", None) or str(e))
            continue
        reason = too_long(res.durations[i])
        if reason:
            fail(i, reason)
        else:
            usable.append(i)
    if usable:
        tr = transcriber or Transcriber(beam=beam, backend=backend, precision=precision,
                                        initial_prompt=prompt)
        from polymodal.tasks.transcribe_run import run_chunks, run_words

        if cues == "words":
            run_words(paths, usable, tr, res, fail, progress, context)
        else:
            run_chunks(paths, usable, tr, res, fail, progress)
    res.seconds = time.perf_counter() - t0
    return res


def is_video(path: str | Path) -> bool:
    """Is ``path`` a video file (by suffix: `polymodal.data.video.VIDEO_SUFFIXES`)?"""
    from polymodal.data.video import VIDEO_SUFFIXES

    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _duration(path: str | Path) -> float:
    """Length in seconds from the header; a video without an audio track or longer than
    ``MAX_VIDEO_SECONDS`` is a `DecodeError` here, before any decoding."""
    if is_video(path):
        from polymodal.data.video import probe

        info = probe(path)
        if not info.has_audio:
            raise DecodeError(str(path), "no audio stream in the video: nothing to transcribe")
        if info.duration > limits.MAX_VIDEO_SECONDS:
            raise DecodeError(str(path), f"video is {info.duration:,.1f} s long, over the limit "
                              f"of {limits.MAX_VIDEO_SECONDS:,g} s (MAX_VIDEO_SECONDS)")
        return info.duration
    from polymodal.data.loaders import probe_audio

    return probe_audio(path).duration


from polymodal.tasks.transcribe_manifest import transcribe_manifest, transcript_wer  # noqa: E402


__all__ = ["Segment", "TranscribeResult", "Transcriber", "audio_blocks", "chunk_bounds", "transcribe",
           "transcribe_manifest", "transcript_wer"]
