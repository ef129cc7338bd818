"""Audio decoding (re-exported by `polymodal.data.loaders`): anything libsndfile reads (WAV,
FLAC, OGG, MP3), mixed down to mono float32 and resampled.

The header's sample rate and channels must lie within ``MIN_SAMPLE_RATE``–``MAX_SAMPLE_RATE``
and ``MAX_AUDIO_CHANNELS`` (for WAV they are read by `polymodal.data.headers` before libsndfile
opens the file, so 2^31 Hz gets a message naming the rate, not "SF_INFO struct incomplete").
At most ``max_seconds`` and never more than ``MAX_DECODED_SAMPLES`` samples per channel are
decoded, block by block, mixed down as they are read (memory: one mono copy); the polyphase
resampler's factors are at most ``MAX_RESAMPLE_FACTOR`` and its output length is checked before
it runs, so memory and time stay proportional to the output whatever the header declares.
Empty audio, unreadable headers and NaN/infinite samples are refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.core.errors import DecodeError, UsageError
from polymodal.data import limits
from polymodal.data.headers import check_file, is_text_file, wav_header
from polymodal.data.limits import MAX_AUDIO_SECONDS

AUDIO_BLOCK = 1 << 16  # frames decoded per read


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header declares (``declared_frames``: a WAV data chunk declaring
    more frames than the file holds; None otherwise)."""

    format: str
    sample_rate: int
    channels: int
    frames: int
    declared_frames: int | None = None

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    def note(self, max_seconds: float | None = None) -> str | None:
        """What the output must say about this usable file: frames missing, audio cut."""
        notes = []
        if self.declared_frames is not None:
            notes.append(f"the header declares {self.declared_frames:,} frames but the file "
                         f"holds {self.frames:,} (truncated?); the {self.frames:,} present are "
                         f"used")
        if max_seconds is not None and self.duration > max_seconds:
            notes.append(f"audio is {self.duration:.1f} s long; only the first "
                         f"{max_seconds:g} s are used")
        return "; ".join(notes) or None


def _sf_reason(e: Exception) -> str:
    msg = getattr(e, "error_string", None) or str(e)
    return " ".join(str(msg).split()).rstrip(".")


def _check_audio_header(path: Path, rate: int, channels: int) -> None:
    lo, hi = limits.MIN_SAMPLE_RATE, limits.MAX_SAMPLE_RATE
    if not lo <= rate <= hi:
        raise DecodeError(str(path), f"sample rate {rate:,} Hz is outside the supported range "
                                     f"{lo:,}–{hi:,} Hz")
    if channels < 1:
        raise DecodeError(str(path), f"cannot decode audio: header declares {channels} channels")
    if channels > limits.MAX_AUDIO_CHANNELS:
        raise DecodeError(str(path), f"too many audio channels ({channels} > limit of "
                                     f"{limits.MAX_AUDIO_CHANNELS})")


def check_sample_rate(rate: int) -> int:
    """A requested (output) sample rate within the limits, else `UsageError`."""
    lo, hi = limits.MIN_SAMPLE_RATE, limits.MAX_SAMPLE_RATE
    if not lo <= int(rate) <= hi:
        raise UsageError(f"sample rate must be within {lo:,}–{hi:,} Hz, got {rate}")
    return int(rate)


def probe_audio(path: str | Path) -> AudioInfo:
    """Cheap check of an audio file from its header: a regular file, readable, not empty,
    rate and channels within the limits (a WAV's are read before libsndfile opens it)."""
    import soundfile as sf

    path = Path(path)
    check_file(path)
    wav = wav_header(path)
    if wav is not None:
        _check_audio_header(path, wav.sample_rate, wav.channels)
    try:
        info = sf.info(str(path))
    except Exception as e:
        if is_text_file(path):
            raise DecodeError(str(path), "not an audio file: the file contains text") from None
        raise DecodeError(str(path), f"cannot decode audio: bad header or unsupported format "
                                     f"({_sf_reason(e)})") from None
    _check_audio_header(path, int(info.samplerate), int(info.channels))
    if info.frames <= 0:
        raise DecodeError(str(path), "audio is empty (0 samples)")
    declared = None
    if wav is not None and wav.data_bytes is not None and wav.block_align > 0:
        declared = wav.data_bytes // wav.block_align
        declared = declared if declared > info.frames else None
    return AudioInfo(info.format, int(info.samplerate), int(info.channels), int(info.frames),
                     declared)


def resample_factors(orig_rate: int, target_rate: int) -> tuple[int, int]:
    """(up, down) of the polyphase resampler: the exact ratio when both factors are at most
    ``MAX_RESAMPLE_FACTOR``, else the closest ratio with factors that small (relative rate
    error below 6e-5 for any pair of rates within the limits, a pitch shift of 0.1 cent).
    The filter has ``20 * max(up, down) + 1`` taps, so this
    bounds its size whatever rate a header declares (999,983 -> 16,000 Hz needs 20 M taps)."""
    cap = limits.MAX_RESAMPLE_FACTOR
    g = math.gcd(orig_rate, target_rate)
    up, down = target_rate // g, orig_rate // g
    if max(up, down) <= cap:
        return up, down
    if up < down:
        f = Fraction(target_rate, orig_rate).limit_denominator(cap)
        return max(1, f.numerator), f.denominator
    f = Fraction(orig_rate, target_rate).limit_denominator(cap)
    return f.denominator, max(1, f.numerator)


def resample(wav: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling of a 1-D signal (float32 out); the output length is checked
    against ``MAX_DECODED_SAMPLES`` before anything is allocated (`UsageError` above)."""
    if orig_rate == target_rate:
        return wav.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    up, down = resample_factors(int(orig_rate), int(target_rate))
    n_out = -(-len(wav) * up // down)
    if n_out > limits.MAX_DECODED_SAMPLES:
        raise UsageError(f"resampled audio too long ({n_out:,} samples > limit of "
                         f"{limits.MAX_DECODED_SAMPLES:,})")
    return resample_poly(wav, up, down).astype(np.float32)


def read_mono(f: Any, frames: int, path: str | Path) -> np.ndarray:
    """At most ``frames`` from the open ``soundfile.SoundFile`` ``f``, read in blocks of
    ``AUDIO_BLOCK`` and mixed down as it goes (one mono copy in memory); NaN or infinite
    samples are a `DecodeError` naming ``path``."""
    parts, total = [], 0
    while total < frames:
        block = f.read(min(AUDIO_BLOCK, frames - total), dtype="float32", always_2d=True)
        if not len(block):
            break
        if not np.isfinite(block).all():
            raise DecodeError(str(path), "audio contains NaN or infinite samples")
        parts.append(block[:, 0].copy() if block.shape[1] == 1 else block.mean(axis=1))
        total += len(block)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _decode_mono(path: Path, frames: int | None) -> tuple[np.ndarray, int]:
    """Read at most ``frames`` (None: to the end) with `read_mono`; -> (mono float32, rate).
    More than ``MAX_DECODED_SAMPLES`` frames is an error."""
    import soundfile as sf

    cap = limits.MAX_DECODED_SAMPLES
    with sf.SoundFile(str(path)) as f:
        rate = int(f.samplerate)
        mono = read_mono(f, cap + 1 if frames is None else min(frames, cap + 1), path)
    total = len(mono)
    if total > cap:
        raise DecodeError(str(path), f"audio too long to decode (more than {cap:,} samples per "
                                     f"channel, the limit; set max_seconds to read the start)")
    return mono, rate


def load_audio(path: str | Path, sample_rate: int = 16000,
               max_seconds: float | None = MAX_AUDIO_SECONDS) -> np.ndarray:
    """Decode an audio file to mono float32 at ``sample_rate``; only the first ``max_seconds``
    are read (None: all, up to ``MAX_DECODED_SAMPLES``). Raises `DecodeError` for unusable
    files, `UsageError` for bad arguments."""
    check_sample_rate(sample_rate)
    if max_seconds is not None and max_seconds <= 0:
        raise UsageError(f"max_seconds must be positive, got {max_seconds}")
    path = Path(path)
    info = probe_audio(path)
    frames = None if max_seconds is None else int(np.ceil(max_seconds * info.sample_rate))
    want = info.frames if frames is None else min(frames, info.frames)
    if want > limits.MAX_DECODED_SAMPLES:
        raise DecodeError(str(path), f"audio too long to decode ({want:,} samples per channel > "
                                     f"limit of {limits.MAX_DECODED_SAMPLES:,}; set max_seconds "
                                     f"to read the start)")
    try:
        mono, rate = _decode_mono(path, frames)
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(str(path), f"cannot decode audio ({_sf_reason(e)})") from None
    if mono.size == 0:
        raise DecodeError(str(path), "audio is empty (0 samples)")
    try:
        wav = resample(mono, rate, int(sample_rate))
    except UsageError as e:
        raise DecodeError(str(path), str(e)) from None
    if max_seconds is not None:
        wav = wav[: int(max_seconds * sample_rate)]
    return wav
