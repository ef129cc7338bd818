"""Modality loaders: decode one file into what encoders consume. Errors are `DecodeError`
naming the file and the reason in plain words (never a library traceback)."""
from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from polymodal.errors import DecodeError

MAX_IMAGE_PIXELS = 89_478_485  # Pillow's default bomb limit
MIN_IMAGE_SIDE = 2


def load_image(path: str | Path) -> Image.Image:
    """Decode an image file to RGB, honouring EXIF orientation."""
    path = Path(path)
    if not path.is_file():
        raise DecodeError(str(path), "file not found")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            return im.convert("RGB")
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(str(path), f"cannot decode image ({type(e).__name__}: {e})") from None


def load_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = 30.0
               ) -> np.ndarray:
    """Decode an audio file to mono float32 at ``sample_rate``, cut to ``max_seconds``."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DecodeError(str(path), "file not found")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise DecodeError(str(path), f"cannot decode audio ({e})") from None
    wav = data.mean(axis=1)
    if sr != sample_rate:
        from scipy.signal import resample_poly
        from math import gcd

        g = gcd(sr, sample_rate)
        wav = resample_poly(wav, sample_rate // g, sr // g).astype(np.float32)
    if max_seconds is not None:
        wav = wav[: int(max_seconds * sample_rate)]
    return wav


def normalize_text(text: str) -> str:
    """Unicode NFC, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).split())
