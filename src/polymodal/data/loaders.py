"""Modality loaders: decode one file into what encoders consume. Errors are `DecodeError`
naming the file and the reason in plain words (never a library traceback).

Every file is checked first by `check_file`: it must be a *regular* file (a folder, a FIFO, a
device or a symlink to one is refused before it is opened: reading a FIFO blocks forever,
``/dev/zero`` never ends), not empty and at most ``MAX_FILE_BYTES``. The limits live in
`polymodal.data.limits` (README "Limits"); each refusal states the value and the limit.

Images: any format Pillow reads, EXIF orientation applied, transparency composited on white,
the first frame of an animated image, returned as 8-bit RGB. The size declared in the header
(PNG, JPEG, GIF, BMP, WebP, TIFF: `polymodal.data.headers`) is checked against ``max_pixels``
and ``MIN_IMAGE_SIDE`` *before* any pixel is decoded, so a 100000×100000 "bomb" costs
microseconds. Truncated or corrupt pixel data is an error (we never set Pillow's
``LOAD_TRUNCATED_IMAGES``). High-bit-depth greys are scaled, not clipped (`to_8bit`).

Audio (`polymodal.data.audio`, re-exported here): anything libsndfile reads (WAV, FLAC, OGG,
MP3), rate, channels and length checked against the limits before decoding, mixed down to mono
float32, resampled, cut to ``max_seconds``.

`media_note` is the one header check ``validate`` and ``encode`` both run; it returns what the
output must say about a usable file (audio cut at ``max_seconds``, an animated image reduced to
its first frame, a WAV holding fewer frames than its header declares).

Text: Unicode NFC and collapsed whitespace; truncation is the tokenizer's job.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polymodal.core.errors import DecodeError
# re-exported: callers import the audio functions, `check_file` and these limits from here
from polymodal.data.audio import (AudioInfo, check_sample_rate, load_audio,  # noqa: F401
                                  probe_audio, resample, resample_factors)
from polymodal.data.headers import check_file, is_text_file, looks_like_text  # noqa: F401
from polymodal.data.headers import image_size as _header_size
from polymodal.data.limits import MAX_AUDIO_SECONDS, MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE  # noqa: F401

# `load_image(draft_for=S)` keeps both sides of a JPEG >= this x S: at 1x the nearest
# DCT scale cost one of 41 JPEG photos cosine 0.955 after the resize to 224; at 2x the
# minimum was 0.995 (docs/RESULTS.md §1)
JPEG_DRAFT_FACTOR = 2

__all__ = ["AudioInfo", "ImageInfo", "JPEG_DRAFT_FACTOR", "MAX_AUDIO_SECONDS", "MAX_IMAGE_PIXELS",
           "MIN_IMAGE_SIDE", "check_file", "check_sample_rate", "load_audio", "load_image",
           "looks_like_text", "media_note", "normalize_text", "probe_audio", "probe_image",
           "resample", "resample_factors", "to_8bit"]


@dataclass(frozen=True)
class ImageInfo:
    """What an image file's header declares."""

    format: str
    width: int
    height: int
    animated: bool = False

    def note(self, max_seconds: float | None = None) -> str | None:
        """What the output must say about this usable image (None: nothing)."""
        return "animated image; only the first frame is used" if self.animated else None


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

    check_file(path)
    sniffed = _header_size(path)
    if sniffed is not None:
        _check_size(path, sniffed[1], sniffed[2], max_pixels, min_side)
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as e:
        raise DecodeError(str(path), f"image too large ({e})") from None
    except Exception as e:
        if is_text_file(path):
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
    """Cheap check of an image file: a regular file, non-empty, an image, sensible declared
    size. Reads the header only; truncated pixel data is found by `load_image`."""
    path = Path(path)
    with _open_checked(path, max_pixels, min_side) as im:
        try:
            animated = bool(getattr(im, "is_animated", False))
        except Exception:  # a broken second frame: load_image decodes the first only
            animated = False
        return ImageInfo(im.format or "?", im.size[0], im.size[1], animated)


def to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale a high-bit-depth grey image (Pillow modes ``I;16*``, ``I``, ``F``) to uint8.

    The rule: 16-bit unsigned (``I;16*``) by its range, ``v / 257`` (65535 -> 255);
    32-bit int (``I``): values in 0..255 as they are, in 0..65535 (16-bit data, as Pillow opens
    some 16-bit files) ``/ 257``, anything else (negative or wider) min-max over the image;
    float (``F``): values in [0, 1] ``* 255``, in [0, 255] as they are, anything else min-max.
    A constant image outside 0..255 is clipped. Rounded to the nearest level."""
    a = arr.astype(np.float32, copy=False)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        a = a / 257.0
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        a = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif mode == "I" and lo >= 0.0 and hi <= 65535.0:
        a = a / 257.0
    elif hi > lo:
        a = (a - lo) * (255.0 / (hi - lo))
    return np.rint(np.clip(a, 0.0, 255.0)).astype(np.uint8)


def _to_rgb(im, path: Path):
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        arr = np.asarray(im)
        if im.mode == "F" and not np.isfinite(arr).all():
            raise DecodeError(str(path), "image contains NaN or infinite pixel values")
        im = Image.fromarray(to_8bit(arr, im.mode), "L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB")


def load_image(path: str | Path, max_pixels: int | None = MAX_IMAGE_PIXELS,
               min_side: int = MIN_IMAGE_SIDE, draft_for: int | None = None):
    """Decode an image file (its first frame) to an RGB ``PIL.Image``, honouring EXIF
    orientation; transparent pixels become white. Raises `DecodeError` for unusable files.

    ``draft_for``: the side the caller will resize the image down to (at most). A JPEG is then
    decoded by libjpeg at 1/2, 1/4 or 1/8 scale (DCT scaling, ``Image.draft``) as long as
    both sides stay at least ``JPEG_DRAFT_FACTOR`` times that side (1.92x the encode rate on
    camera-sized photos, docs/RESULTS.md §1); other formats decode in full."""
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with _open_checked(path, max_pixels, min_side) as im:
            if draft_for and im.format == "JPEG":
                side = JPEG_DRAFT_FACTOR * int(draft_for)
                im.draft(im.mode, (side, side))
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im, path)
    except DecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise DecodeError(str(path), f"image too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = " ".join(str(e).split())
        if "truncated" in msg.lower():
            raise DecodeError(str(path), "image data is truncated (the file is incomplete)"
                              ) from None
        raise DecodeError(str(path), f"corrupt image data ({msg})") from None
    except Exception as e:
        raise DecodeError(str(path), f"cannot decode image ({type(e).__name__}: {e})") from None


def media_note(modality: str, path: str | Path, max_seconds: float | None = None) -> str | None:
    """The header check ``validate`` and ``encode`` both run on every image / audio / video
    file: `probe_image`, `probe_audio` or `polymodal.data.video.probe` (raises `DecodeError`),
    then what the output must say about
    the usable file (`ImageInfo.note` / `AudioInfo.note`), or None."""
    if modality == "video":
        from polymodal.data.limits import MAX_VIDEO_SECONDS
        from polymodal.data.video import probe

        return probe(path).note(MAX_VIDEO_SECONDS)
    info = probe_image(path) if modality == "image" else probe_audio(path)
    return info.note(max_seconds)


def normalize_text(text: str) -> str:
    """Unicode NFC, whitespace collapsed to single spaces, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", str(text)).split())
