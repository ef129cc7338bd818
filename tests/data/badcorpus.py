"""Bad-input corpus, generated at test time into a tmp folder (nothing binary is committed).

Each `make_<name>(root)` writes one small manifest whose *second* data row (or the file itself,
for file-level cases) is broken in one specific way, plus good rows around it, and returns a
`Case` saying where the problem must be reported and with which key phrase.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Case:
    """Where a bad input must be reported: ``row`` None means a file-level problem."""

    name: str
    manifest: Path
    row: int | None
    column: str | None
    phrase: str
    level: str = "error"
    columns: dict[str, str] | None = None
    media: Path | None = None  # the bad media file itself (for loader-level checks)


def good_png(path: Path, size: int = 16, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def good_wav(path: Path, seconds: float = 0.25, rate: int = 8000, channels: int = 1) -> Path:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    sf.write(path, np.stack([tone] * channels, axis=1) if channels > 1 else tone, rate)
    return path


def png_header(width: int, height: int) -> bytes:
    """A tiny but well-formed PNG whose IHDR declares ``width``×``height``."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _csv(root: Path, name: str, header: str, rows: list[str]) -> Path:
    path = root / f"{name}.csv"
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def _image_case(root: Path, name: str, bad_name: str, write_bad, phrase: str) -> Case:
    """Manifest id,image,text with rows: good, BAD, good."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    good_png(d / "a.png", seed=1)
    good_png(d / "c.png", seed=2)
    bad = d / bad_name
    write_bad(bad)
    m = _csv(d, "manifest", "id,image,text",
             ["a,a.png,first caption", f"b,{bad_name},second caption", "c,c.png,third caption"])
    return Case(name, m, 2, "image", phrase, media=bad)


def _audio_case(root: Path, name: str, write_bad, phrase: str, level: str = "error") -> Case:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    good_wav(d / "a.wav")
    good_wav(d / "c.wav")
    write_bad(d / "b.wav")
    m = _csv(d, "manifest", "id,audio,label",
             ["a,a.wav,zero", "b,b.wav,one", "c,c.wav,two"])
    return Case(name, m, 2, "audio", phrase, level=level, media=d / "b.wav")


def make_truncated_png(root: Path) -> Case:
    def write(p: Path) -> None:
        good_png(p, size=64, seed=3)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    return _image_case(root, "truncated_png", "b.png", write, "truncated")


def make_zero_byte(root: Path) -> Case:
    return _image_case(root, "zero_byte", "b.png", lambda p: p.write_bytes(b""), "empty file")


def make_text_as_jpg(root: Path) -> Case:
    return _image_case(root, "text_as_jpg", "b.jpg",
                       lambda p: p.write_text("this is not a photo\n"), "not an image")


def make_one_pixel(root: Path) -> Case:
    return _image_case(root, "one_pixel", "b.png", lambda p: good_png(p, size=1),
                       "image too small")


def make_huge_declared(root: Path) -> Case:
    return _image_case(root, "huge_declared", "b.png",
                       lambda p: p.write_bytes(png_header(100_000, 100_000)), "image too large")


def make_wav_bad_header(root: Path) -> Case:
    def write(p: Path) -> None:
        good_wav(p)
        data = p.read_bytes()
        p.write_bytes(data[:8] + b"WAVX" + data[12:])  # 'WAVE' form type corrupted
    return _audio_case(root, "wav_bad_header", write, "bad header")


def make_empty_audio(root: Path) -> Case:
    import soundfile as sf

    return _audio_case(root, "empty_audio",
                       lambda p: sf.write(p, np.zeros(0, dtype=np.float32), 16000),
                       "audio is empty")


def make_stereo_44k(root: Path) -> Case:
    """Not bad at all: stereo 44.1 kHz must load (mono, resampled); no problem is expected."""
    return _audio_case(root, "stereo_44k",
                       lambda p: good_wav(p, seconds=0.5, rate=44100, channels=2), "")


def make_parquet_nan(root: Path) -> Case:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = root / "parquet_nan"
    d.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": ["a", "b", "c"], "text": ["one", "two", "three"],
                      "score": pa.array([0.5, float("nan"), 1.5], type=pa.float64())})
    path = d / "manifest.parquet"
    pq.write_table(table, path)
    return Case("parquet_nan", path, 2, "score", "NaN value", level="warning",
                columns={"label": "score"})


def make_missing_file(root: Path) -> Case:
    return _image_case(root, "missing_file", "b.png", lambda p: None, "file not found")


def make_duplicate_id(root: Path) -> Case:
    d = root / "duplicate_id"
    d.mkdir(parents=True, exist_ok=True)
    m = _csv(d, "manifest", "id,text", ["x1,a cat", "x1,a dog", "x3,a bird"])
    return Case("duplicate_id", m, 2, "id", "duplicate id 'x1'")


def make_unknown_column(root: Path) -> Case:
    d = root / "unknown_column"
    d.mkdir(parents=True, exist_ok=True)
    m = _csv(d, "manifest", "id,title", ["a,a cat", "b,a dog"])
    return Case("unknown_column", m, None, "caption", "is not in the manifest",
                columns={"text": "caption"})


def make_non_utf8_csv(root: Path) -> Case:
    d = root / "non_utf8_csv"
    d.mkdir(parents=True, exist_ok=True)
    m = d / "manifest.csv"
    m.write_bytes("id,text\na,plain\nb,caf\u00e9 cr\u00e8me\nc,ok\n".encode("latin-1"))
    return Case("non_utf8_csv", m, 2, None, "not valid UTF-8")


def make_empty_manifest(root: Path) -> Case:
    d = root / "empty_manifest"
    d.mkdir(parents=True, exist_ok=True)
    m = _csv(d, "manifest", "id,image,text", [])
    return Case("empty_manifest", m, None, None, "manifest has no rows")


MAKERS = {
    "truncated_png": make_truncated_png,
    "zero_byte": make_zero_byte,
    "text_as_jpg": make_text_as_jpg,
    "one_pixel": make_one_pixel,
    "huge_declared": make_huge_declared,
    "wav_bad_header": make_wav_bad_header,
    "empty_audio": make_empty_audio,
    "stereo_44k": make_stereo_44k,
    "parquet_nan": make_parquet_nan,
    "missing_file": make_missing_file,
    "duplicate_id": make_duplicate_id,
    "unknown_column": make_unknown_column,
    "non_utf8_csv": make_non_utf8_csv,
    "empty_manifest": make_empty_manifest,
}
FILE_LEVEL = ("unknown_column", "non_utf8_csv", "empty_manifest")


def build_corpus(root: Path) -> dict[str, Case]:
    """Generate every case under ``root``."""
    return {name: make(root) for name, make in MAKERS.items()}
