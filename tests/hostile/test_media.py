"""Hostile media files (issue 11): every one is refused with one line naming the file, the value
and the limit, or decoded correctly; `validate` and `encode` agree row by row because both run
the same checks (`check_file`, `media_note`, the loaders). Files are built in tmp_path from the
bundled av-digits sample (real MNIST PNGs and FSDD WAVs), so nothing here needs ../shared."""
from __future__ import annotations

import json
import os
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from polymodal.core.errors import DecodeError
from polymodal.data import limits
from polymodal.data.datasets import sample_path
from polymodal.data.loaders import (load_audio, load_image, media_note, probe_audio,
                                    probe_image)
from polymodal.data.validate import validate_manifest
from polymodal.features.encode import encode_manifest

pytestmark = pytest.mark.timeout(60)

SAMPLE = sample_path("av-digits").parent
DIGIT_PNG = SAMPLE / "images" / "mnist_00000.png"  # a real MNIST "7", 28×28 grey
SPOKEN_WAV = SAMPLE / "audio" / "0_george_14.wav"  # a real FSDD "zero", 8 kHz mono
NOT_REGULAR = "not a regular file (a folder, pipe or device)"
RATE_RANGE = "1,000–384,000 Hz"


@pytest.fixture(scope="module")
def image_encoder():
    from polymodal.features.encoders.image import EfficientNetLite0Encoder

    return EfficientNetLite0Encoder()


@pytest.fixture(scope="module")
def audio_encoder():
    from polymodal.features.encoders.audio import LogMelEncoder

    return LogMelEncoder()


def _wav(path: Path, seconds: float | None = None, channels: int = 1, rate: int = 8000,
         subtype: str = "PCM_16", signal: np.ndarray | None = None) -> Path:
    """The real FSDD clip (tiled to ``seconds``), optionally on several channels."""
    if signal is None:
        sig, rate = sf.read(SPOKEN_WAV, dtype="float32")
        if seconds is not None:
            sig = np.resize(sig, int(seconds * rate))
        signal = np.stack([sig * (1 - 0.1 * c) for c in range(channels)], 1) if channels > 1 \
            else sig
    sf.write(path, signal, rate, subtype=subtype)
    return path


def _patch(path: Path, offset: int, fmt: str, value: int) -> Path:
    data = bytearray(path.read_bytes())
    data[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))
    return path


def _manifest(root: Path, column: str, names: list[str]) -> Path:
    """Rows r1, r2, … whose ``column`` is the file of that name (relative to root)."""
    m = root / "m.jsonl"
    m.write_text("".join(json.dumps({"id": f"r{i}", column: n}) + "\n"
                         for i, n in enumerate(names, 1)))
    return m


def _validate(m: Path) -> dict[int, tuple[str, str]]:
    return {p.row: (p.level, p.reason) for p in validate_manifest(m).problems}


def _encode(m: Path, column: str, encoder, out: Path):
    res = encode_manifest(m, out, encoders={column: encoder}, cache_dir=out.parent / "cache",
                          progress=False)
    skipped = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(s["row"], s["reason"]) for s in skipped] == [(p.row, p.reason) for p in res.skipped]
    return res, {p.row: ("error", p.reason) for p in res.skipped}


def _digit() -> np.ndarray:
    return np.asarray(Image.open(DIGIT_PNG))


# ------------------------------------------------------------------ files that are not files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_device_and_folder_are_refused_everywhere_without_blocking(tmp_path, audio_encoder):
    os.mkfifo(tmp_path / "pipe.wav")
    (tmp_path / "zero.wav").symlink_to("/dev/zero")
    (tmp_path / "null.wav").symlink_to("/dev/null")
    (tmp_path / "x.png").mkdir()
    _wav(tmp_path / "ok.wav")
    for name in ("pipe.wav", "zero.wav", "null.wav", "x.png"):
        p = tmp_path / name
        for fn in (load_image, load_audio, probe_image, probe_audio):
            with pytest.raises(DecodeError) as e:
                fn(p)
            assert str(e.value) == f"{p}: {NOT_REGULAR}"
    m = _manifest(tmp_path, "audio", ["ok.wav", "pipe.wav", "zero.wav", "null.wav", "x.png"])
    expect = {r: ("error", f"{n}: {NOT_REGULAR}")
              for r, n in [(2, "pipe.wav"), (3, "zero.wav"), (4, "null.wav"), (5, "x.png")]}
    assert _validate(m) == expect
    assert {p.row: (p.level, p.reason) for p in validate_manifest(m, check_media=False).problems
            } == expect  # the quick check says the same
    res, skipped = _encode(m, "audio", audio_encoder, tmp_path / "f")
    assert skipped == expect and res.stats["audio"].encoded == 1


def test_file_over_max_file_bytes_is_refused_before_reading(tmp_path, monkeypatch, image_encoder):
    big = tmp_path / "big.png"
    big.write_bytes(DIGIT_PNG.read_bytes())
    Image.new("RGB", (8, 8), "white").save(tmp_path / "small.png")
    size, small = big.stat().st_size, (tmp_path / "small.png").stat().st_size
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", size - 1)
    assert small < size - 1
    reason = f"file too large ({size:,} bytes > limit of {size - 1:,} bytes)"
    with pytest.raises(DecodeError, match=rf"^{big}: file too large \({size:,} bytes"):
        load_image(big)
    m = _manifest(tmp_path, "image", ["small.png", "big.png"])
    assert _validate(m) == {2: ("error", f"big.png: {reason}")}
    assert _encode(m, "image", image_encoder, tmp_path / "f")[1] == {2: ("error",
                                                                          f"big.png: {reason}")}


# ------------------------------------------------------------------ audio headers
@pytest.mark.parametrize("rate", [999_983, 2**31, 999])
def test_wav_rate_outside_limits_is_refused_from_the_header(tmp_path, rate):
    p = _patch(_wav(tmp_path / "r.wav", seconds=0.2), 24, "<I", rate)  # fmt chunk: sample rate
    tracemalloc.start()
    for fn in (probe_audio, load_audio):
        with pytest.raises(DecodeError) as e:
            fn(p)
        assert str(e.value) == (f"{p}: sample rate {rate:,} Hz is outside the supported range "
                                f"{RATE_RANGE}")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * 2**20  # refused from the header: no decoding, no resampler allocation


def test_odd_rate_within_limits_resamples_in_bounded_memory(tmp_path):
    # 383,963 Hz shares no factor with 16 kHz: an exact polyphase filter would need 7.7 M taps
    # (resample_poly peaks at ~350 MiB for this 0.5-s file); capped factors need 200 k taps
    p = _patch(_wav(tmp_path / "odd.wav", seconds=0.5), 24, "<I", 383_963)
    frames = probe_audio(p).frames
    tracemalloc.start()
    try:
        wav = load_audio(p, sample_rate=16000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert abs(len(wav) - frames * 16000 / 383_963) <= 2
    assert np.isfinite(wav).all() and wav.std() > 0
    assert peak < 32 * 2**20, f"resampling {frames} frames peaked at {peak / 2**20:.1f} MiB"


def test_channel_limit_from_header_and_eight_channel_mixdown(tmp_path, monkeypatch):
    p65 = _patch(_wav(tmp_path / "c65.wav", seconds=0.2), 22, "<H", 65)  # fmt chunk: channels
    with pytest.raises(DecodeError) as e:
        probe_audio(p65)
    assert str(e.value) == f"{p65}: too many audio channels (65 > limit of 64)"
    mono = load_audio(_wav(tmp_path / "mono.wav"), 8000)
    eight = load_audio(_wav(tmp_path / "eight.wav", channels=8, subtype="FLOAT"), 8000)
    assert probe_audio(tmp_path / "eight.wav").channels == 8
    # channel c is mono * (1 - 0.1 c): the mixdown is their mean, mono * 0.65
    np.testing.assert_allclose(eight, 0.65 * mono, atol=1e-4)
    monkeypatch.setattr(limits, "MAX_AUDIO_CHANNELS", 4)
    with pytest.raises(DecodeError, match=r"eight.wav: too many audio channels \(8 > limit of 4\)$"):
        load_audio(tmp_path / "eight.wav")


def test_decoded_and_resampled_sample_limits(tmp_path, monkeypatch):
    p = _wav(tmp_path / "a.wav")
    frames = probe_audio(p).frames  # 4304 at 8 kHz
    monkeypatch.setattr(limits, "MAX_DECODED_SAMPLES", 1000)
    with pytest.raises(DecodeError) as e:
        load_audio(p, 8000, max_seconds=None)
    assert str(e.value) == (f"{p}: audio too long to decode ({frames:,} samples per channel > "
                            f"limit of 1,000; set max_seconds to read the start)")
    assert len(load_audio(p, 8000, max_seconds=0.1)) == 800  # the start fits
    with pytest.raises(DecodeError) as e:  # 800 frames at 8 kHz -> 1600 at 16 kHz
        load_audio(p, 16000, max_seconds=0.1)
    assert str(e.value) == f"{p}: resampled audio too long (1,600 samples > limit of 1,000)"


# ------------------------------------------------------------------ audio content
def test_long_audio_is_pooled_by_default_and_a_cut_is_stated(tmp_path, audio_encoder):
    from polymodal.features.encoders.audio import LogMelEncoder

    _wav(tmp_path / "long.wav", seconds=35.0)
    _wav(tmp_path / "short.wav")
    m = _manifest(tmp_path, "audio", ["short.wav", "long.wav"])
    assert _validate(m) == {}  # by default 35 s are used in full: pooled over two windows
    res, _ = _encode(m, "audio", audio_encoder, tmp_path / "pooled")
    assert [(p.row, p.reason) for p in res.notes] == [
        (2, "long.wav: audio is 35.0 s long; features pooled over 2 windows of 17.5 s (mean)")]
    note = "long.wav: audio is 35.0 s long; only the first 30 s are used"  # a user's cap
    assert {p.row: (p.level, p.reason) for p in validate_manifest(m, max_seconds=30).problems} \
        == {2: ("warning", note)}
    for run in ("f1", "f2"):  # the second run reads the cache and must say the same
        res, skipped = _encode(m, "audio", LogMelEncoder(max_seconds=30), tmp_path / run)
        assert skipped == {} and res.stats["audio"].skipped == 0
        assert [(p.row, p.level, p.reason) for p in res.notes] == [(2, "warning", note)]
        notes = [json.loads(x) for x in (tmp_path / run / "notes.jsonl").read_text().splitlines()]
        assert [(n["row"], n["column"], n["reason"]) for n in notes] == [(2, "audio", note)]
        assert f"  row 2  audio: {note}" in res.table().splitlines()
    assert res.stats["audio"].cached == 2


def test_truncated_and_header_only_wavs(tmp_path):
    full = _wav(tmp_path / "full.wav")
    data = full.read_bytes()
    frames = probe_audio(full).frames
    (tmp_path / "cut.wav").write_bytes(data[:44 + 2 * 1000])  # data chunk still says 4304
    (tmp_path / "hdr.wav").write_bytes(data[:44])
    info = probe_audio(tmp_path / "cut.wav")
    assert (info.frames, info.declared_frames) == (1000, frames)
    wav = load_audio(tmp_path / "cut.wav", 8000)
    np.testing.assert_allclose(wav, load_audio(full, 8000)[:1000], atol=1e-6)
    m = _manifest(tmp_path, "audio", ["full.wav", "cut.wav", "hdr.wav"])
    assert _validate(m) == {
        2: ("warning", f"cut.wav: the header declares {frames:,} frames but the file holds "
                       "1,000 (truncated?); the 1,000 present are used"),
        3: ("error", "hdr.wav: audio is empty (0 samples)")}


def test_bad_audio_rows_validate_and_encode_agree(tmp_path, audio_encoder):
    _wav(tmp_path / "ok.wav")
    (tmp_path / "zero.wav").write_bytes(b"")
    sig = sf.read(SPOKEN_WAV, dtype="float32")[0]
    sig[100] = np.nan
    _wav(tmp_path / "nan.wav", signal=sig, subtype="FLOAT")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 8000)
    _patch(_wav(tmp_path / "rate.wav", seconds=0.2), 24, "<I", 999_983)
    _patch(_wav(tmp_path / "chan.wav", seconds=0.2), 22, "<H", 65)
    (tmp_path / "notes.wav").write_text("not audio at all\n")
    names = ["ok.wav", "zero.wav", "nan.wav", "empty.wav", "rate.wav", "chan.wav", "notes.wav",
             "gone.wav"]
    m = _manifest(tmp_path, "audio", names)
    expect = {2: "zero.wav: empty file (0 bytes)",
              3: "nan.wav: audio contains NaN or infinite samples",
              4: "empty.wav: audio is empty (0 samples)",
              5: f"rate.wav: sample rate 999,983 Hz is outside the supported range {RATE_RANGE}",
              6: "chan.wav: too many audio channels (65 > limit of 64)",
              7: "notes.wav: not an audio file: the file contains text",
              8: "gone.wav: file not found"}
    expect = {r: ("error", x) for r, x in expect.items()}
    assert _validate(m) == expect
    res, skipped = _encode(m, "audio", audio_encoder, tmp_path / "f")
    assert skipped == expect
    assert res.stats["audio"].encoded == 1 and res.features.vectors("audio")[0].shape == (1, 256)


def test_flac_ogg_mp3_decode_like_the_wav(tmp_path):
    ref = load_audio(SPOKEN_WAV, 16000)
    sig, rate = sf.read(SPOKEN_WAV, dtype="float32")
    for ext in ("flac", "ogg", "mp3"):
        p = tmp_path / f"a.{ext}"
        sf.write(p, sig, rate)
        assert media_note("audio", p, 30.0) is None
        wav = load_audio(p, 16000)
        assert wav.dtype == np.float32 and abs(len(wav) - len(ref)) <= 2, ext
        assert np.mean(wav ** 2) == pytest.approx(np.mean(ref ** 2), rel=0.15), ext
        if ext == "flac":  # lossless
            np.testing.assert_allclose(wav, ref, atol=1e-4)
    m = _manifest(tmp_path, "audio", ["a.flac", "a.ogg", "a.mp3"])
    assert _validate(m) == {}


# ------------------------------------------------------------------ images
def test_high_bit_depth_greys_match_the_8bit_png(tmp_path):
    ref = np.asarray(load_image(DIGIT_PNG))
    d = _digit().astype(np.float64)
    assert d.min() == 0 and d.max() == 255  # so the min-max rule is exact too
    variants = {"f01.tif": (d / 255).astype(np.float32),            # F in [0, 1]: * 255
                "f255.tif": d.astype(np.float32),                   # F in [0, 255]: as is
                "fneg.tif": (d / 127.5 - 1).astype(np.float32),     # F in [-1, 1]: min-max
                "u16.tif": (d * 257).astype(np.uint16),             # I;16: / 257
                "u16.png": (d * 257).astype(np.uint16),             # 16-bit PNG
                "i32.tif": d.astype(np.int32),                      # I in 0..255: as is
                "i32w.tif": (d * 65536).astype(np.int32)}           # I, wide: min-max
    for name, arr in variants.items():
        Image.fromarray(arr).save(tmp_path / name)
        im = load_image(tmp_path / name)
        out = np.asarray(im)
        assert im.mode == "RGB" and out.shape == (28, 28, 3), name
        assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1, name
    Image.fromarray(np.full((4, 4), np.nan, np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(DecodeError) as e:
        load_image(tmp_path / "nan.tif")
    assert str(e.value) == f"{tmp_path / 'nan.tif'}: image contains NaN or infinite pixel values"


def test_cmyk_jpeg_and_palette_png_with_transparency(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # pure red ink
    px = np.asarray(load_image(tmp_path / "cmyk.jpg"))[8, 8].astype(int)
    assert px[0] >= 240 and px[1] <= 15 and px[2] <= 15, px
    pal = Image.fromarray(np.where(_digit() > 127, 1, 0).astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    pal.save(tmp_path / "pal.png", transparency=0)  # index 0 (the background) is transparent
    out = np.asarray(load_image(tmp_path / "pal.png"))
    ink = _digit() > 127
    assert (out[~ink] == 255).all()  # transparent -> white, not black
    assert (out[ink] == (200, 30, 30)).all()


def test_animated_gif_first_frame_is_used_and_said(tmp_path, image_encoder):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    assert tuple(np.asarray(load_image(tmp_path / "anim.gif"))[4, 4]) == (255, 0, 0)
    assert probe_image(tmp_path / "anim.gif").animated
    (tmp_path / "still.png").write_bytes(DIGIT_PNG.read_bytes())
    m = _manifest(tmp_path, "image", ["still.png", "anim.gif"])
    note = "anim.gif: animated image; only the first frame is used"
    assert _validate(m) == {2: ("warning", note)}
    res, skipped = _encode(m, "image", image_encoder, tmp_path / "f")
    assert skipped == {} and [(p.row, p.reason) for p in res.notes] == [(2, note)]


def _bombs(tmp_path: Path) -> dict[str, tuple[int, int]]:
    out = {}
    Image.new("P", (4, 4)).save(tmp_path / "g.gif")
    _patch(_patch(tmp_path / "g.gif", 6, "<H", 65535), 8, "<H", 65535)  # logical screen
    out["g.gif"] = (65535, 65535)
    Image.new("RGB", (4, 4)).save(tmp_path / "b.bmp")
    _patch(_patch(tmp_path / "b.bmp", 18, "<i", 100_000), 22, "<i", 100_000)
    out["b.bmp"] = (100_000, 100_000)
    Image.new("L", (4, 4)).save(tmp_path / "t.tif")
    raw = bytearray((tmp_path / "t.tif").read_bytes())
    ifd = struct.unpack("<I", raw[4:8])[0]
    for k in range(struct.unpack("<H", raw[ifd:ifd + 2])[0]):
        e = ifd + 2 + 12 * k
        tag, typ = struct.unpack("<HH", raw[e:e + 4])
        if tag in (256, 257):
            raw[e + 8:e + 8 + (2 if typ == 3 else 4)] = struct.pack("<H" if typ == 3 else "<I",
                                                                  50_000)
    (tmp_path / "t.tif").write_bytes(bytes(raw))
    out["t.tif"] = (50_000, 50_000)
    return out


def test_image_bombs_in_gif_bmp_tiff_headers_are_refused_from_the_header(tmp_path,
                                                                         image_encoder):
    bombs = _bombs(tmp_path)
    tracemalloc.start()
    for name, (w, h) in bombs.items():
        for fn in (probe_image, load_image):
            with pytest.raises(DecodeError) as e:
                fn(tmp_path / name)
            assert str(e.value) == (f"{tmp_path / name}: image too large ({w}×{h} pixels > "
                                    f"limit of {limits.MAX_IMAGE_PIXELS:,} pixels)")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * 2**20  # refused from the header: no pixel buffer
    m = _manifest(tmp_path, "image", list(bombs))
    expect = {r: ("error", f"{n}: image too large ({w}×{h} pixels > limit of 89,478,485 pixels)")
              for r, (n, (w, h)) in enumerate(bombs.items(), 1)}
    assert _validate(m) == expect
    assert _encode(m, "image", image_encoder, tmp_path / "f")[1] == expect


def test_thin_truncated_and_text_images_validate_and_encode_agree(tmp_path, image_encoder):
    Image.new("L", (1, 500), 128).save(tmp_path / "line.png")
    Image.new("L", (2, 500), 128).save(tmp_path / "thin.png")
    Image.open(DIGIT_PNG).convert("RGB").resize((64, 64)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "note.png").write_text("just text\n")
    (tmp_path / "zero.png").write_bytes(b"")
    assert load_image(tmp_path / "thin.png").size == (2, 500)
    m = _manifest(tmp_path, "image", ["line.png", "thin.png", "full.jpg", "cut.jpg", "note.png",
                                      "zero.png"])
    expect = {1: "line.png: image too small (1×500 pixels; each side must be at least 2)",
              4: "cut.jpg: image data is truncated (the file is incomplete)",
              5: "note.png: not an image: the file contains text",
              6: "zero.png: empty file (0 bytes)"}
    expect = {r: ("error", x) for r, x in expect.items()}
    assert _validate(m) == expect
    res, skipped = _encode(m, "image", image_encoder, tmp_path / "f")
    assert skipped == expect and res.stats["image"].encoded == 2
