"""Audio encoder ``logmel``: log-mel statistics, no learned weights.

Audio is decoded to 16 kHz mono (``load_audio`` resamples, e.g. FSDD's 8 kHz), cut into 25 ms
Hann-windowed frames every 10 ms, turned into a 64-band mel power spectrogram (HTK mel scale,
triangular filters, implemented here with numpy) and ``log(mel + 1e-6)``. Optionally quiet
frames (more than ``trim_db`` below the loudest frame) are dropped so leading/trailing silence
does not dominate the statistics. The vector is
``[mean(logmel), std(logmel), mean(delta), std(delta)]`` over time -> 4 * 64 = 256 values.
The values are raw (not standardised); downstream models should standardise per dimension.

Audio longer than one window (``WINDOW_SECONDS`` = 30 s, Whisper's) is split into
``ceil(seconds / 30)`` equal windows, each encoded on its own, and the vectors are averaged,
weighted by window length (`window_bounds`, `pool_windows`; ``whisper-tiny`` does the same), so
a clip of at most 30 s gives the same vector as before and memory per window stays bounded.
By default up to ``MAX_AUDIO_SECONDS`` (600 s) are used and pooled; beyond it, or beyond a
user's ``max_seconds``, the file is cut and ``encode`` says so in notes.jsonl.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from polymodal.data.limits import MAX_AUDIO_SECONDS
from polymodal.data.loaders import load_audio
from polymodal.features.encoders.base import encode_items
from polymodal.core.errors import UsageError

LOG_FLOOR = 1e-6
WINDOW_SECONDS = 30.0


def window_bounds(n: int, window: int) -> list[tuple[int, int]]:
    """``[start, end)`` of ``ceil(n / window)`` equal windows covering ``n`` samples (one
    window, the whole clip, when ``n <= window``)."""
    k = max(1, -(-int(n) // int(window)))
    edges = [round(j * n / k) for j in range(k + 1)]
    return list(zip(edges[:-1], edges[1:]))


def pool_windows(vectors: np.ndarray, owners: Sequence[int], weights: Sequence[float],
                 n_items: int) -> np.ndarray:
    """Weighted mean of the window vectors ``[W, D]`` of each item -> ``[n_items, D]``
    (``owners[w]``: the item window ``w`` belongs to; an item of one window keeps its vector
    exactly)."""
    owners_a = np.asarray(owners)
    out = np.empty((n_items, vectors.shape[1]), np.float32)
    for i in range(n_items):
        idx = np.flatnonzero(owners_a == i)
        if len(idx) == 1:
            out[i] = vectors[idx[0]]
        else:
            w = np.asarray(weights, np.float64)[idx]
            out[i] = (vectors[idx].astype(np.float64) * w[:, None]).sum(0) / w.sum()
    return out


def windows_note(seconds: float, max_seconds: float | None) -> str | None:
    """What ``encode`` says about a clip pooled over several windows (None for one window)."""
    used = seconds if max_seconds is None else min(seconds, max_seconds)
    n = len(window_bounds(round(used * 1000), round(WINDOW_SECONDS * 1000)))
    if n < 2:
        return None
    return f"features pooled over {n} windows of {used / n:.1f} s (mean)"


def audio_note(item: Any, max_seconds: float | None) -> str | None:
    """What the output must say about a usable audio file for an encoder that reads at most
    ``max_seconds`` and pools windows: the header check's note (`media_note`: cut, truncated)
    plus the windows pooled. Raises `DecodeError` like `probe_audio`."""
    from polymodal.data.loaders import probe_audio

    info = probe_audio(item)
    cut, pooled = info.note(max_seconds), windows_note(info.duration, max_seconds)
    if pooled and not cut:
        pooled = f"audio is {info.duration:.1f} s long; {pooled}"
    return "; ".join(p for p in (cut, pooled) if p) or None


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters ``[n_mels, n_fft // 2 + 1]`` (peak 1, HTK mel spacing)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise UsageError(f"mel range must satisfy 0 <= fmin < fmax <= {sample_rate / 2} Hz")
    bins = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (center - lower)
    falling = (upper - bins[None, :]) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def frames(wav: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Overlapping frames ``[T, n_fft]`` (zero-padded so short clips give one frame)."""
    if len(wav) < n_fft:
        wav = np.pad(wav, (0, n_fft - len(wav)))
    n = 1 + (len(wav) - n_fft) // hop
    return np.lib.stride_tricks.sliding_window_view(wav, n_fft)[::hop][:n]


def log_mel(wav: np.ndarray, filters: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Log mel power spectrogram ``[T, n_mels]`` of a mono waveform."""
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    spec = np.abs(np.fft.rfft(frames(wav, n_fft, hop) * window, axis=1)) ** 2
    return np.log(spec.astype(np.float32) @ filters.T + LOG_FLOOR)


def deltas(x: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas along time of ``x [T, F]`` (edges repeated)."""
    padded = np.pad(x, ((width, width), (0, 0)), mode="edge")
    n = len(x)
    num = sum(k * (padded[width + k: width + k + n] - padded[width - k: width - k + n])
              for k in range(1, width + 1))
    return num / (2 * sum(k * k for k in range(1, width + 1)))


def trim_quiet(logmel: np.ndarray, trim_db: float | None) -> np.ndarray:
    """Drop frames whose energy is more than ``trim_db`` below the loudest frame."""
    if trim_db is None or len(logmel) < 2:
        return logmel
    energy_db = 10.0 * np.log10(np.exp(logmel).sum(axis=1))
    keep = energy_db >= energy_db.max() - trim_db
    return logmel[keep] if keep.sum() >= 2 else logmel


def logmel_stats(logmel: np.ndarray) -> np.ndarray:
    """``[mean, std]`` over time of the log-mel and of its deltas -> ``4 * n_mels`` values."""
    d = deltas(logmel)
    return np.concatenate([logmel.mean(0), logmel.std(0), d.mean(0), d.std(0)]).astype(
        np.float32)


class LogMelEncoder:
    """Log-mel statistics (mean + std of log-mel and its deltas); 4 * n_mels dims."""

    name = "logmel"
    modality = "audio"
    batch_size = 16  # encode holds a few batches of decoded audio: 16 × 600 s ≈ 0.6 GB each
    backends: dict = {}  # no model: --backend / --precision do not apply (id unchanged)

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64, n_fft: int = 400,
                 hop: int = 160, fmin: float = 0.0, fmax: float | None = None,
                 trim_db: float | None = 40.0, max_seconds: float | None = MAX_AUDIO_SECONDS):
        self.sample_rate, self.n_mels, self.n_fft, self.hop = sample_rate, n_mels, n_fft, hop
        self.fmin = fmin
        self.fmax = sample_rate / 2 if fmax is None else fmax
        self.trim_db = trim_db
        self.max_seconds = max_seconds
        self.filters = mel_filterbank(sample_rate, n_fft, n_mels, fmin, self.fmax)
        self.dim = 4 * n_mels

    @property
    def id(self) -> str:
        trim = "none" if self.trim_db is None else f"{self.trim_db:g}dB"
        return (f"logmel|sr={self.sample_rate}|mels={self.n_mels}|fft={self.n_fft}"
                f"|hop={self.hop}|f={self.fmin:g}-{self.fmax:g}|trim={trim}"
                f"|max={self.max_seconds}s|stats=mean,std,dmean,dstd{self._windows_id}")

    @property
    def _windows_id(self) -> str:  # empty for max_seconds <= 30 s: one window, the old vector
        if self.max_seconds is not None and self.max_seconds <= WINDOW_SECONDS:
            return ""
        return f"|windows={WINDOW_SECONDS:g}s-mean"

    def prepare(self, item: Any) -> np.ndarray:
        """Decode one audio file to 16 kHz mono float32, at most ``max_seconds`` (raises
        `DecodeError`: `load_audio` refuses empty, non-finite and over-limit audio)."""
        return load_audio(item, self.sample_rate, self.max_seconds)

    def media_note(self, item: Any) -> str | None:
        """What ``encode`` says about this file (cut at ``max_seconds``, windows pooled)."""
        return audio_note(item, self.max_seconds)

    def features(self, wav: np.ndarray) -> np.ndarray:
        """One waveform -> ``[dim]`` statistics vector (longer than 30 s: the length-weighted
        mean of the vectors of its windows)."""
        bounds = window_bounds(len(wav), int(WINDOW_SECONDS * self.sample_rate))
        vecs = np.stack([self._window_features(wav[a:b]) for a, b in bounds])
        return pool_windows(vecs, [0] * len(bounds), [b - a for a, b in bounds], 1)[0]

    def _window_features(self, wav: np.ndarray) -> np.ndarray:
        spec = trim_quiet(log_mel(wav, self.filters, self.n_fft, self.hop), self.trim_db)
        return logmel_stats(spec)

    def encode_prepared(self, batch: Sequence[np.ndarray]) -> torch.Tensor:
        """Encode prepared waveforms -> ``[len(batch), dim]`` float32."""
        if not len(batch):
            return torch.empty(0, self.dim)
        return torch.from_numpy(np.stack([self.features(w) for w in batch]))

    def encode(self, items: Any, batch_size: int | None = None, normalize: bool = False,
               numpy: bool = False) -> Any:
        """One item -> ``[dim]``, a list -> ``[N, dim]`` (see `encode_items`); a float32
        tensor, or an ``np.ndarray`` with ``numpy=True``."""
        return encode_items(self, items, batch_size, normalize, numpy)
