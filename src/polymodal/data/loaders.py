"""Modality loaders: decode one file into what encoders consume. Errors are `DecodeError`
naming the file and the reason in plain words (never a library traceback).

Images: any format Pillow reads, EXIF orientation applied, transparency composited on white,
returned as RGB. Refused with a clear reason: missing or zero-byte files, non-image content
(e.g. a text file named ``.jpg``), a declared size above ``max_pixels`` (checked from the file
header *before* any pixel is decoded, so a 100000×100000 "bomb" costs microseconds), images with a
side under ``MIN_IMAGE_SIDE`` = 2 pixels (1×1 tracking pixels and 1-pixel lines carry no content;
anything from 2×2 up is resized by the encoders) and truncated or corrupt pixel data (we never set
Pillow's ``LOAD_TRUNCATED_IMAGES``).

Audio: anything libsndfile reads (WAV, FLAC, OGG, MP3), mixed down to mono float32, resampled to
the requested rate with a polyphase filter and cut to ``max_seconds`` (only that much is decoded).
Empty audio, unreadable headers and NaN/infinite samples are refused.

Text: Unicode NFC and collapsed whitespace; truncation is the tokenizer's job.
"""
from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polymodal.core.errors import DecodeError, UsageError

MAX_IMAGE_PIXELS = 89_478_485  # Pillow's default bomb limit (~9459×9459)
MIN_IMAGE_SIDE = 2
MAX_AUDIO_SECONDS = 30.0


@dataclass(frozen=True)
class ImageInfo:
    """What an image file's header declares."""

    format: str
    width: int
    height: int


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header declares."""

    format: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DecodeError(str(path), "file not found")
    if not path.is_file():
        raise DecodeError(str(path), "not a file (is it a folder?)")
    if path.stat().st_size == 0:
        raise DecodeError(str(path), "empty file (0 bytes)")


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\0" in head:
        return False
    try:
        s = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:
            return False
        s = head[: e.start].decode("utf-8")
    return all(c.isprintable() or c in "\r\n\t\f" for c in s)


def _jpeg_size(fh) -> tuple[int, int] | None:
    """Scan JPEG markers up to the first start-of-frame; (width, height) or None."""
    fh.seek(2)
    for _ in range(256):
        b = fh.read(1)
        while b == b"\xff":
            b = fh.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0x01, *range(0xD0, 0xD9)):
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        seg = fh.read(2)
        if len(seg) < 2:
            return None
        length = struct.unpack(">H", seg)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            sof = fh.read(5)
            if len(sof) < 5:
                return None
            h, w = struct.unpack(">HH", sof[1:5])
            return w, h
        fh.seek(length - 2, 1)
    return None


def _header_size(path: Path) -> tuple[str, int, int] | None:
    """(format, width, height) read from the first bytes of PNG, JPEG, GIF, BMP and WebP files
    without Pillow (so no pixel is decoded and no bomb check is triggered); None otherwise."""
    with path.open("rb") as fh:
        head = fh.read(32)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
            w, h = struct.unpack(">II", head[16:24])
            return "PNG", w, h
        if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
            w, h = struct.unpack("<HH", head[6:10])
            return "GIF", w, h
        if head[:2] == b"BM" and len(head) >= 26:
            if struct.unpack("<I", head[14:18])[0] == 12:
                w, h = struct.unpack("<HH", head[18:22])
            else:
                w, h = struct.unpack("<ii", head[18:26])
            return "BMP", abs(w), abs(h)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
            kind = head[12:16]
            if kind == b"VP8 ":
                w, h = struct.unpack("<HH", head[26:30])
                return "WEBP", w & 0x3FFF, h & 0x3FFF
            if kind == b"VP8L":
                bits = struct.unpack("<I", head[21:25])[0]
                return "WEBP", 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
            if kind == b"VP8X":
                w = int.from_bytes(head[24:27], "little") + 1
                h = int.from_bytes(head[27:30], "little") + 1
                return "WEBP", w, h
        if head[:2] == b"\xff\xd8":
            size = _jpeg_size(fh)
            return ("JPEG", *size) if size else None
    return None


def _check_size(path: Path, w: int, h: int, max_pixels: int | None, min_side: int) -> None:
    if max_pixels is not None and w * h > max_pixels:
        raise DecodeError(str(path), f"image too large ({w}×{h} pixels > limit of "
                                     f"{max_pixels:,} pixels)")
    if min(w, h) < min_side:
        raise DecodeError(str(path), f"image too small ({w}×{h} pixels; each side must be at "
                                     f"least {min_side})")


def _open_checked(path: Path, max_pixels: int | None, min_side: int):
    """Cheap checks, then ``Image.open`` (header only, nothing decoded); the caller closes."""
    from PIL import Image

    _check_file(path)
    sniffed = _header_size(path)
    if sniffed is not None:
        _check_size(path, sniffed[1], sniffed[2], max_pixels, min_side)
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as e:
        raise DecodeError(str(path), f"image too large ({e})") from None
    except Exception as e:
        with path.open("rb") as fh:
            head = fh.read(512)
        if _looks_like_text(head):
            raise DecodeError(str(path), "not an image: the file contains text") from None
        if isinstance(e, Image.UnidentifiedImageError):
            raise DecodeError(str(path), "not an image (unknown or unsupported format)") from None
        raise DecodeError(str(path), f"cannot read image header ({type(e).__name__}: {e})"
                          ) from None
    try:
        _check_size(path, im.size[0], im.size[1], max_pixels, min_side)
    except DecodeError:
        im.close()
        raise
    return im


def probe_image(path: str | Path, max_pixels: int | None = MAX_IMAGE_PIXELS,
                min_side: int = MIN_IMAGE_SIDE) -> ImageInfo:
    """Cheap check of an image file: exists, non-empty, an image, sensible declared size.
    Reads the header only; truncated pixel data is found by `load_image`."""
    path = Path(path)
    with _open_checked(path, max_pixels, min_side) as im:
        return ImageInfo(im.format or "?", im.size[0], im.size[1])


def _to_rgb(im):
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        scale = 257.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
        im = Image.fromarray(np.clip(arr / scale, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB")


def load_image(path: str | Path, max_pixels: int | None = MAX_IMAGE_PIXELS,
               min_side: int = MIN_IMAGE_SIDE):
    """Decode an image file to an RGB ``PIL.Image``, honouring EXIF orientation; transparent
    pixels become white. Raises `DecodeError` with a plain reason for unusable files."""
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with _open_checked(path, max_pixels, min_side) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im)
    except DecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise DecodeError(str(path), f"image too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e)
        if "truncated" in msg.lower():
            raise DecodeError(str(path), "image data is truncated (the file is incomplete)"
                              ) from None
        raise DecodeError(str(path), f"corrupt image data ({msg})") from None
    except Exception as e:
        raise DecodeError(str(path), f"cannot decode image ({type(e).__name__}: {e})") from None


def _sf_reason(e: Exception) -> str:
    msg = getattr(e, "error_string", None) or str(e)
    return " ".join(str(msg).split()).rstrip(".")


def probe_audio(path: str | Path) -> AudioInfo:
    """Cheap check of an audio file from its header: exists, readable, not empty."""
    import soundfile as sf

    path = Path(path)
    _check_file(path)
    try:
        info = sf.info(str(path))
    except Exception as e:
        with path.open("rb") as fh:
            head = fh.read(512)
        if _looks_like_text(head):
            raise DecodeError(str(path), "not an audio file: the file contains text") from None
        raise DecodeError(str(path), f"cannot decode audio: bad header or unsupported format "
                                     f"({_sf_reason(e)})") from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise DecodeError(str(path), f"cannot decode audio: header declares {info.samplerate} Hz, "
                                     f"{info.channels} channels")
    if info.frames <= 0:
        raise DecodeError(str(path), "audio is empty (0 samples)")
    return AudioInfo(info.format, int(info.samplerate), int(info.channels), int(info.frames))


def resample(wav: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling of a 1-D signal (float32 out)."""
    if orig_rate == target_rate:
        return wav.astype(np.float32, copy=False)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(orig_rate, target_rate)
    return resample_poly(wav, target_rate // g, orig_rate // g).astype(np.float32)


def load_audio(path: str | Path, sample_rate: int = 16000,
               max_seconds: float | None = MAX_AUDIO_SECONDS) -> np.ndarray:
    """Decode an audio file to mono float32 at ``sample_rate``; only the first ``max_seconds``
    are read (None: all). Raises `DecodeError` for unusable files."""
    import soundfile as sf

    if int(sample_rate) <= 0:
        raise UsageError(f"sample rate must be positive, got {sample_rate}")
    if max_seconds is not None and max_seconds <= 0:
        raise UsageError(f"max_seconds must be positive, got {max_seconds}")
    path = Path(path)
    info = probe_audio(path)
    frames = -1 if max_seconds is None else int(np.ceil(max_seconds * info.sample_rate))
    try:
        data, sr = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except Exception as e:
        raise DecodeError(str(path), f"cannot decode audio ({_sf_reason(e)})") from None
    if data.size == 0:
        raise DecodeError(str(path), "audio is empty (0 samples)")
    if not np.isfinite(data).all():
        raise DecodeError(str(path), "audio contains NaN or infinite samples")
    wav = resample(data.mean(axis=1), int(sr), int(sample_rate))
    if max_seconds is not None:
        wav = wav[: int(max_seconds * sample_rate)]
    return wav


def normalize_text(text: str) -> str:
    """Unicode NFC, whitespace collapsed to single spaces, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", str(text)).split())
