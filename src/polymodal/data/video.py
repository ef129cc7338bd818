"""Video decoding with PyAV (the ``[video]`` extra; FFmpeg bundled in the wheel): `probe`,
`sample_frames` (at a rate or by scene change, bounded count) and `read_audio_track`.

Every file passes `check_file` first (a regular, non-empty file within ``MAX_FILE_BYTES``), then
the container's header: a video stream whose declared frame size is within
``MAX_VIDEO_FRAME_PIXELS``, a duration within ``MAX_VIDEO_SECONDS``. Corrupt or truncated data,
a missing video stream (or audio stream, when the audio track is asked for) is a `DecodeError`
naming the file with a one-line reason, as for images and audio. Sampled frames are scaled down
to at most ``VIDEO_FRAME_SIDE`` px on the long side (encoders resize to ~224 px anyway), so
memory is bounded by ``MAX_VIDEO_FRAMES`` small RGB images whatever the file declares.

Sampling never cuts silently: `FrameSample.note` says when the bound lowered the rate or
dropped scene changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.core.errors import DecodeError, UsageError
from polymodal.core.lazy import need
from polymodal.data import limits
from polymodal.data.headers import check_file, is_text_file

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
SCENE_THUMB = 32  # side of the grey thumbnail compared for scene changes


@dataclass(frozen=True)
class VideoInfo:
    """What a video file's container declares (``duration`` in seconds, ``fps`` frames/s)."""

    format: str
    duration: float
    fps: float
    width: int
    height: int
    has_video: bool
    has_audio: bool
    codec: str = ""
    audio_codec: str | None = None

    @property
    def frame_size(self) -> tuple[int, int]:
        return (self.width, self.height)

    def note(self, max_seconds: float | None = None) -> str | None:
        if max_seconds is not None and self.duration > max_seconds:
            return (f"video is {self.duration:.1f} s long; only the first {max_seconds:g} s "
                    f"are used")
        return None


@dataclass
class FrameSample:
    """Frames sampled from one clip: RGB ``PIL.Image``s and their times (seconds)."""

    frames: list[Any]
    times: list[float]
    duration: float
    note: str | None = None  # what the output must say (bound reached)
    scores: list[float] = field(default_factory=list)  # scene-change scores (scene mode)


def need_av():
    av = need("av", message="video needs PyAV: pip install 'polymodal[video]'", error=UsageError)
    av.logging.set_level(av.logging.PANIC)
    return av


def _reason(e: Exception) -> str:
    msg = " ".join(str(getattr(e, "strerror", None) or e).split()).rstrip(".")
    return msg.split(": '", 1)[0] if msg else type(e).__name__


def _open(path: Path):
    av = need_av()
    check_file(path)
    try:
        return av.open(str(path), metadata_errors="ignore")
    except Exception as e:
        if is_text_file(path):
            raise DecodeError(str(path), "not a video file: the file contains text") from None
        raise DecodeError(str(path), f"cannot open video: corrupt, truncated or unsupported "
                                     f"container ({_reason(e)})") from None


def _info(path: Path, c) -> VideoInfo:
    vs = c.streams.video[0] if c.streams.video else None
    aus = c.streams.audio[0] if c.streams.audio else None
    dur = 0.0
    if c.duration is not None:
        dur = float(c.duration) / 1_000_000
    elif vs is not None and vs.duration is not None and vs.time_base is not None:
        dur = float(vs.duration * vs.time_base)
    w = h = 0
    fps = 0.0
    codec = ""
    if vs is not None:
        w, h = int(vs.codec_context.width or 0), int(vs.codec_context.height or 0)
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        fps = float(rate) if rate else 0.0
        codec = vs.codec_context.name or ""
    return VideoInfo(c.format.name if c.format else "?", dur, fps, w, h, vs is not None,
                     aus is not None, codec, aus.codec_context.name if aus is not None else None)


def _check_info(path: Path, info: VideoInfo, need_video: bool = True) -> None:
    if need_video:
        if not info.has_video:
            raise DecodeError(str(path), "no video stream in the file")
        if info.width * info.height > limits.MAX_VIDEO_FRAME_PIXELS:
            raise DecodeError(str(path), f"video frames too large ({info.width}×{info.height} "
                                         f"pixels > limit of {limits.MAX_VIDEO_FRAME_PIXELS:,})")
        if min(info.width, info.height) < limits.MIN_IMAGE_SIDE:
            raise DecodeError(str(path), f"video frames too small ({info.width}×{info.height} "
                                         f"pixels)")


def probe(path: str | Path) -> VideoInfo:
    """Cheap check from the container header (nothing decoded): a regular file PyAV opens,
    with a video stream of a sensible frame size. Raises `DecodeError`."""
    path = Path(path)
    with _open(path) as c:
        info = _info(path, c)
    _check_info(path, info)
    return info


def ticks(info: VideoInfo, fps: float, max_seconds: float = limits.MAX_VIDEO_SECONDS) -> int:
    """How many frames sampling at ``fps`` takes from a clip (ticks before its last frame,
    which starts one native frame before the declared end)."""
    span = min(info.duration, max_seconds) - (1.0 / info.fps if info.fps > 0 else 0.0)
    return max(1, math.floor(max(span, 0.0) * fps + 1e-6) + 1)


def _check_args(fps: float | None, scene: float | None, max_frames: int) -> None:
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise UsageError(f"fps must be a positive number, got {fps}")
    if scene is not None and not 0 < scene < 1:
        raise UsageError(f"scene threshold must lie between 0 and 1, got {scene}")
    if not 1 <= int(max_frames) <= limits.MAX_VIDEO_FRAMES:
        raise UsageError(f"max frames must be within 1–{limits.MAX_VIDEO_FRAMES}, got "
                         f"{max_frames}")


def _small(frame, side: int):
    w, h = frame.width, frame.height
    k = min(1.0, side / max(w, h))
    if k < 1.0:
        return frame.to_image(width=max(2, round(w * k)), height=max(2, round(h * k)))
    return frame.to_image()


def _decoded(path: Path, c, max_seconds: float):
    """Yield (time, frame) of the video stream up to ``max_seconds``; decode errors mid-stream
    are a `DecodeError` (corrupt / truncated data)."""
    vs = c.streams.video[0]
    vs.thread_type = "AUTO"
    try:
        for frame in c.decode(vs):
            t = frame.time if frame.time is not None else 0.0
            if t > max_seconds:
                return
            yield float(t), frame
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(str(path), f"corrupt or truncated video data ({_reason(e)})") from None


def sample_frames(path: str | Path, fps: float | None = 1.0, scene: float | None = None,
                  max_frames: int = 32, max_seconds: float | None = limits.MAX_VIDEO_SECONDS,
                  side: int = limits.VIDEO_FRAME_SIDE) -> FrameSample:
    """Sample frames: one every ``1 / fps`` s (the first decoded frame at or after each tick),
    or (``scene`` set, a 0–1 threshold on the mean absolute grey difference of 32×32
    thumbnails) every frame that differs from the last kept one by more than ``scene``; the
    first frame always. At most ``max_frames``: a rate is lowered to fit (evenly spread over the
    clip), scene changes keep the strongest; either way `FrameSample.note` says so."""
    _check_args(fps if scene is None else None, scene, max_frames)
    path = Path(path)
    cap = min(float(max_seconds or limits.MAX_VIDEO_SECONDS), limits.MAX_VIDEO_SECONDS)
    with _open(path) as c:
        info = _info(path, c)
        _check_info(path, info)
        dur = min(info.duration, cap) if info.duration > 0 else cap
        notes = []
        if info.duration > cap:
            notes.append(info.note(cap))
        if scene is None:
            rate = float(fps)
            want = ticks(info, rate, cap) if info.duration > 0 else max_frames
            if want > max_frames:
                rate = max_frames / dur
                notes.append(f"{want} frames at {fps:g} fps exceed the limit of {max_frames} "
                             f"frames; sampled at {rate:.3g} fps instead")
            frames, times, nxt = [], [], 0.0
            for t, fr in _decoded(path, c, cap):
                if t + 1e-6 >= nxt and len(frames) < max_frames:
                    frames.append(_small(fr, side))
                    times.append(t)
                    nxt = (math.floor(t * rate + 1e-6) + 1) / rate
                last = t
            scores: list[float] = []
        else:
            frames, times, scores, ref = [], [], [], None
            last = 0.0
            for t, fr in _decoded(path, c, cap):
                thumb = np.asarray(fr.to_image(width=SCENE_THUMB, height=SCENE_THUMB)
                                   .convert("L"), np.float32) / 255.0
                d = 1.0 if ref is None else float(np.abs(thumb - ref).mean())
                if ref is None or d > scene:
                    frames.append(_small(fr, side))
                    times.append(t)
                    scores.append(d)
                    ref = thumb
                    if len(frames) > 4 * max_frames:  # bound memory: drop the weakest now
                        frames, times, scores = _strongest(frames, times, scores, max_frames)
                last = t
            found = len(frames)
            if found > max_frames:
                frames, times, scores = _strongest(frames, times, scores, max_frames)
                notes.append(f"{found} scene changes exceed the limit of {max_frames} frames; "
                             f"the {max_frames} strongest are used")
    if not frames:
        raise DecodeError(str(path), "video has no decodable frame")
    if info.duration > 2.0 and last < min(info.duration, cap) * 0.5:
        raise DecodeError(str(path), f"video data is truncated (frames end at {last:.1f} s of "
                                     f"{info.duration:.1f} s declared)")
    return FrameSample(frames, times, info.duration, "; ".join(n for n in notes if n) or None,
                       scores)


def _strongest(frames, times, scores, n):
    keep = sorted(sorted(range(len(frames)), key=lambda i: -scores[i])[:n])
    return [frames[i] for i in keep], [times[i] for i in keep], [scores[i] for i in keep]


def read_audio_track(path: str | Path, sample_rate: int = 16000,
                     max_seconds: float | None = limits.MAX_AUDIO_SECONDS) -> np.ndarray:
    """The first audio stream of a video (or audio) file as mono float32 at ``sample_rate``,
    at most ``max_seconds`` (None: up to ``MAX_VIDEO_SECONDS``). A file without an audio
    stream, corrupt data or an empty track is a `DecodeError`."""
    from polymodal.data.audio import check_sample_rate

    check_sample_rate(sample_rate)
    if max_seconds is not None and max_seconds <= 0:
        raise UsageError(f"max_seconds must be positive, got {max_seconds}")
    av = need_av()
    path = Path(path)
    cap = min(float(max_seconds or limits.MAX_VIDEO_SECONDS), limits.MAX_VIDEO_SECONDS)
    n_max = int(math.ceil(cap * sample_rate))
    with _open(path) as c:
        if not c.streams.audio:
            raise DecodeError(str(path), "no audio stream in the file")
        declared = float(c.duration) / 1_000_000 if c.duration else 0.0
        st = c.streams.audio[0]
        rs = av.AudioResampler(format="flt", layout="mono", rate=int(sample_rate))
        parts, total = [], 0
        try:
            for frame in c.decode(st):
                for out in rs.resample(frame):
                    a = out.to_ndarray().reshape(-1)
                    parts.append(a)
                    total += a.size
                if total >= n_max:
                    break
            else:
                for out in rs.resample(None):
                    parts.append(out.to_ndarray().reshape(-1))
        except Exception as e:
            raise DecodeError(str(path), f"corrupt or truncated audio data ({_reason(e)})"
                              ) from None
    wav = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0,
                                                                                     np.float32)
    if wav.size == 0:
        raise DecodeError(str(path), "audio track is empty (0 samples)")
    if not np.isfinite(wav).all():
        raise DecodeError(str(path), "audio contains NaN or infinite samples")
    got = wav.size / sample_rate
    if declared > 2.0 and got < min(declared, cap) * 0.5:
        raise DecodeError(str(path), f"audio data is truncated (the track ends at {got:.1f} s "
                                     f"of {declared:.1f} s declared)")
    return wav[:n_max]


def write_video(path: str | Path, frames: list[np.ndarray], fps: float,
                audio: np.ndarray | None = None, sample_rate: int = 16000,
                codec: str | None = None, audio_codec: str | None = None) -> Path:
    """Write RGB uint8 frames (H×W×3, even sides) at ``fps`` and an optional mono float32
    track with PyAV. Codecs follow the suffix: .webm VP8 + Opus (plays in every browser),
    .mp4 / .mov / .mkv H.264 + AAC, .avi MPEG-4 + MP3. Used by the dataset builders and tests."""
    from fractions import Fraction

    av = need_av()
    path = Path(path)
    suffix = path.suffix.lower()
    vdef, adef = {".webm": ("libvpx", "libopus"), ".avi": ("mpeg4", "libmp3lame")}.get(
        suffix, ("libx264", "aac"))
    codec, audio_codec = codec or vdef, audio_codec or adef
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            vs.options = {"preset": "veryfast"}
        ast = None
        if audio is not None:
            ast = c.add_stream(audio_codec, rate=int(sample_rate))
            ast.layout = "mono"
        for i, arr in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), "rgb24")
            vf.pts = i  # frame i at i / fps (the codec's time base is 1 / fps)
            for pkt in vs.encode(vf):
                c.mux(pkt)
        for pkt in vs.encode(None):
            c.mux(pkt)
        if ast is not None:
            fmt = ast.codec_context.format.name if ast.codec_context.format else "fltp"
            n = ast.codec_context.frame_size or 1024
            pcm = np.clip(np.asarray(audio, np.float32), -1, 1)
            rs = av.AudioResampler(format=fmt, layout="mono", rate=int(sample_rate))
            pts = 0
            for i in range(0, len(pcm), n):
                chunk = pcm[i:i + n]
                if len(chunk) < n:
                    chunk = np.pad(chunk, (0, n - len(chunk)))
                fr = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                fr.sample_rate, fr.pts = int(sample_rate), pts
                pts += n
                for out in rs.resample(fr):
                    for pkt in ast.encode(out):
                        c.mux(pkt)
            for pkt in ast.encode(None):
                c.mux(pkt)
    return path
