"""Before any decoder sees a media file: `check_file` (a regular, non-empty file within
``MAX_FILE_BYTES``) and what its header declares, read from the first bytes.

The loaders check these numbers against `polymodal.data.limits` *before* Pillow or libsndfile
see the file, so a header that declares 100000×100000 pixels or 2^31 Hz is refused in
microseconds, with the declared value in the message (libsndfile, for instance, answers a WAV
declaring 2^31 Hz with "SF_INFO struct incomplete" and accepts one declaring 999,983 Hz). Every function returns None for files it does not recognise; the decoders then decide.
"""
from __future__ import annotations

import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from polymodal.core.errors import DecodeError
from polymodal.data import limits


def check_file(path: str | Path) -> int:
    """Refuse anything but a non-empty regular file of at most ``MAX_FILE_BYTES`` (symlinks are
    followed, nothing is opened); -> its size in bytes."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DecodeError(str(path), "file not found") from None
    except OSError as e:
        raise DecodeError(str(path), f"cannot read file ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError(str(path), "not a regular file (a folder, pipe or device)")
    if st.st_size == 0:
        raise DecodeError(str(path), "empty file (0 bytes)")
    if st.st_size > limits.MAX_FILE_BYTES:
        raise DecodeError(str(path), f"file too large ({st.st_size:,} bytes > limit of "
                                     f"{limits.MAX_FILE_BYTES:,} bytes)")
    return st.st_size


def is_text_file(path: Path) -> bool:
    """Whether the file at ``path`` starts with text (`looks_like_text` on its first 512 bytes):
    the reason to give when a decoder refuses it."""
    with open(path, "rb") as fh:
        return looks_like_text(fh.read(512))


def looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of a file are printable UTF-8 (a text file named .jpg / .wav)."""
    if not head or b"\0" in head:
        return False
    try:
        s = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:
            return False
        s = head[: e.start].decode("utf-8")
    return all(c.isprintable() or c in "\r\n\t\f" for c in s)


def _jpeg_size(fh: BinaryIO) -> tuple[int, int] | None:
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


def _tiff_size(fh: BinaryIO, head: bytes) -> tuple[int, int] | None:
    """ImageWidth (tag 256) and ImageLength (257) of the first IFD of a classic TIFF."""
    end = "<" if head[:2] == b"II" else ">"
    fh.seek(struct.unpack(end + "I", head[4:8])[0])
    raw = fh.read(2)
    if len(raw) < 2:
        return None
    n = struct.unpack(end + "H", raw)[0]
    found: dict[int, int] = {}
    for _ in range(min(n, 512)):
        entry = fh.read(12)
        if len(entry) < 12:
            break
        tag, typ = struct.unpack(end + "HH", entry[:4])
        if tag in (256, 257):
            fmt = {3: "H", 4: "I"}.get(typ)  # SHORT or LONG
            if fmt is None:
                return None
            found[tag] = struct.unpack(end + fmt, entry[8:8 + struct.calcsize(fmt)])[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def image_size(path: Path) -> tuple[str, int, int] | None:
    """(format, width, height) declared by a PNG, JPEG, GIF, BMP, WebP or TIFF header."""
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
        if head[:4] in (b"II*\0", b"MM\0*") and len(head) >= 8:
            size = _tiff_size(fh, head)
            return ("TIFF", *size) if size else None
        if head[:2] == b"\xff\xd8":
            size = _jpeg_size(fh)
            return ("JPEG", *size) if size else None
    return None


@dataclass(frozen=True)
class WavHeader:
    """The ``fmt `` chunk of a RIFF/RF64 WAVE file, and the size its ``data`` chunk declares."""

    sample_rate: int
    channels: int
    block_align: int
    data_bytes: int | None  # None when no data chunk header was found (or RF64's -1)


def wav_header(path: Path) -> WavHeader | None:
    """The declared rate, channels and data size of a WAV file (None: not a WAV, or no ``fmt ``
    chunk among the first 64 chunks)."""
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return None
        fmt: tuple[int, int, int] | None = None
        for _ in range(64):
            ch = fh.read(8)
            if len(ch) < 8:
                break
            kind, size = ch[:4], struct.unpack("<I", ch[4:])[0]
            if kind == b"fmt ":
                body = fh.read(16)
                if len(body) < 16:
                    return None
                channels, rate = struct.unpack("<HI", body[2:8])
                fmt = (rate, channels, struct.unpack("<H", body[12:14])[0])
                fh.seek(size - 16 + (size & 1), 1)
                continue
            if kind == b"data":
                if fmt is None:
                    return None
                return WavHeader(*fmt, None if size == 0xFFFFFFFF else size)
            fh.seek(size + (size & 1), 1)
        return WavHeader(*fmt, None) if fmt else None
