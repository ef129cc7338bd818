"""Video encoders: ``frames:<image encoder>`` and ``audio:<audio encoder>`` (modality video).

``frames:<image encoder>`` samples frames (`polymodal.data.video.sample_frames`: ``fps``
per second, or scene changes with ``scene`` set; at most ``max_frames``), encodes each with the
image encoder and returns the clip vector = the mean of its frame vectors. Frame vectors are
cached in the content-addressed store of the *image* encoder under the key
``<file digest>@<time in ms>`` — (file digest, timestamp, encoder id) — and the sampled times
of a clip under ``video-times/`` in the cache, so a re-encode (or another video encoder with the
same sampling) decodes nothing. `frame_vectors` gives a clip's (times, vectors) from the cache;
``encode`` writes them to the feature folder's ``<modality>_frames*.npy`` side files.

``audio:<audio encoder>`` encodes the clip's audio track (`read_audio_track`, at the audio
encoder's sample rate and ``max_seconds``) with any audio encoder; a clip without an audio
stream is a row-level error.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from polymodal.data import limits
from polymodal.features.encoders.base import encode_items, full_decode_options


@dataclass
class PreparedClip:
    digest: str
    times: list[float]
    arrays: list[Any] | None  # prepared frames (None: every frame vector is cached)
    note: str | None = None


def _key(digest: str, t: float) -> str:
    return f"{digest}@{int(round(t * 1000))}"


class FramesEncoder:
    """``frames:<image encoder>``: per-frame image vectors + mean-pooled clip vector."""

    modality = "video"
    batch_size = 4
    backends = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8"),
                "openvino": ("fp32", "int8")}  # passed on to the image encoder, which checks

    def __init__(self, image: str = "efficientnet-lite0", fps: float = 1.0,
                 scene: float | None = None, max_frames: int = 32, backend: str = "auto",
                 precision: str = "auto", cache_dir: str | Path | None = None):
        from polymodal.data.video import _check_args
        from polymodal.features.cache.store import default_cache_dir
        from polymodal.features.encoders.registry import build_encoder

        _check_args(float(fps) if scene is None else None,
                    None if scene is None else float(scene), int(max_frames))
        self.fps, self.scene, self.max_frames = float(fps), scene, int(max_frames)
        # frames arrive decoded, never as JPEG files: the image id stays the full-decode one
        self.image = build_encoder(image, modality="image", backend=backend,
                                   precision=precision, cache_dir=cache_dir,
                                   **full_decode_options(image))
        self.name = f"frames:{image}"
        self.dim = int(self.image.dim)
        self.cache = Path(cache_dir) if cache_dir else default_cache_dir()
        self._store = None

    @property
    def sampling(self) -> str:
        how = f"scene={self.scene:g}" if self.scene is not None else f"fps={self.fps:g}"
        return f"{how}|max={self.max_frames}|side={limits.VIDEO_FRAME_SIDE}"

    @property
    def id(self) -> str:  # the image encoder's backend suffix last, as `rebuild_encoder` reads it
        return _with_backend(self.image.id, f"|{self.sampling}|pool=mean", "frames")

    @property
    def store(self):
        from polymodal.features.cache.store import FeatureStore

        if self._store is None:
            self._store = FeatureStore(self.cache, self.image.id)
        return self._store

    def _times_path(self, digest: str) -> Path:
        import hashlib

        slug = hashlib.sha1(self.sampling.encode()).hexdigest()[:12]
        return self.cache / "video-times" / slug / f"{digest}.json"

    def cached_times(self, digest: str) -> list[float] | None:
        try:
            t = json.loads(self._times_path(digest).read_text())
        except (OSError, ValueError):
            return None
        return [float(x) for x in t] if isinstance(t, list) and t else None

    def prepare(self, item: Any) -> PreparedClip:
        from polymodal.data.video import sample_frames
        from polymodal.features.cache.store import file_digest

        digest = file_digest(Path(item))
        s = sample_frames(item, fps=self.fps, scene=self.scene, max_frames=self.max_frames)
        return PreparedClip(digest, list(s.times), [self.image.prepare(f) for f in s.frames],
                            s.note)

    def media_note(self, item: Any) -> str | None:
        """What ``encode`` says about a clip: the header's note, and the frame bound (rate mode:
        the rate lowered to fit ``max_frames``)."""
        from polymodal.data.video import probe, ticks

        info = probe(item)
        notes = [info.note(limits.MAX_VIDEO_SECONDS)]
        want = ticks(info, self.fps)
        if self.scene is None and want > self.max_frames:
            notes.append(f"{want} frames at {self.fps:g} fps exceed the limit of "
                         f"{self.max_frames} frames; sampled at "
                         f"{self.max_frames / info.duration:.3g} fps instead")
        return "; ".join(n for n in notes if n) or None

    def encode_prepared(self, batch: Sequence[PreparedClip]) -> torch.Tensor:
        """Frame vectors (encoded once, stored in the image encoder's cache) -> per-clip mean
        ``[len(batch), dim]``."""
        from polymodal.core.atomic import atomic_write_text

        out = torch.empty(len(batch), self.dim)
        for b, clip in enumerate(batch):
            keys = [_key(clip.digest, t) for t in clip.times]
            vec, ok = self.store.fetch(keys, self.dim)
            if not ok.all():
                todo = [i for i, o in enumerate(ok) if not o]
                with torch.inference_mode():
                    new = self.image.encode_prepared([clip.arrays[i] for i in todo]
                                                     ).float().cpu().numpy()
                self.store.put([keys[i] for i in todo], new)
                vec = np.asarray(vec, np.float32)
                vec[todo] = new.astype(np.float16).astype(np.float32)
            p = self._times_path(clip.digest)
            if self.cached_times(clip.digest) != clip.times:
                p.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(p, json.dumps(clip.times))
            out[b] = torch.from_numpy(np.asarray(vec, np.float32).mean(axis=0))
        return out

    def frame_vectors(self, digest: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(times [F] float32, vectors [F, dim] float32) of a clip from the cache, or None."""
        times = self.cached_times(digest)
        if not times:
            return None
        vec, ok = self.store.fetch([_key(digest, t) for t in times], self.dim)
        if not ok.all():
            return None
        return np.asarray(times, np.float32), np.asarray(vec, np.float32)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def encode(self, items: Any, batch_size: int | None = None, normalize: bool = False,
               numpy: bool = False) -> Any:
        return encode_items(self, items, batch_size, normalize, numpy)


class TrackAudioEncoder:
    """``audio:<audio encoder>``: the clip's audio track through an audio encoder."""

    modality = "video"
    backends = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8"),
                "openvino": ("fp32", "int8")}

    def __init__(self, audio: str = "logmel", backend: str = "auto", precision: str = "auto",
                 cache_dir: str | Path | None = None):
        from polymodal.features.encoders.registry import build_encoder

        self.audio = build_encoder(audio, modality="audio", backend=backend,
                                   precision=precision, cache_dir=cache_dir)
        self.name = f"audio:{audio}"
        self.dim = int(self.audio.dim)
        self.batch_size = getattr(self.audio, "batch_size", 16)
        self.sample_rate = int(getattr(self.audio, "sample_rate", 16000))
        self.max_seconds = getattr(self.audio, "max_seconds", limits.MAX_AUDIO_SECONDS)

    @property
    def id(self) -> str:
        return _with_backend(self.audio.id, "", "track")

    def prepare(self, item: Any) -> np.ndarray:
        from polymodal.data.video import read_audio_track

        return read_audio_track(item, self.sample_rate, self.max_seconds)

    def encode_prepared(self, batch: Sequence[np.ndarray]) -> torch.Tensor:
        return self.audio.encode_prepared(batch)

    def encode(self, items: Any, batch_size: int | None = None, normalize: bool = False,
               numpy: bool = False) -> Any:
        return encode_items(self, items, batch_size, normalize, numpy)


def _with_backend(inner_id: str, settings: str, kind: str) -> str:
    from polymodal.features.encoders.backends import backend_id, split_backend_id

    base, resolved = split_backend_id(inner_id)
    return f"{kind}[{base}]{settings}{backend_id(resolved)}"
