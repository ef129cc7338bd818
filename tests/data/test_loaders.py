"""Loaders on real files (openclipart PNGs, FSDD WAVs) and on generated edge cases."""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from polymodal.data.loaders import (MIN_IMAGE_SIDE, AudioInfo, ImageInfo, _header_size,
                                    load_audio, load_image, normalize_text, probe_audio,
                                    probe_image, resample)
from polymodal.core.errors import DecodeError, UsageError


def _clipart(shared_data, n=3):
    paths = sorted((shared_data / "openclipart" / "images" / "animals").glob("*.png"))[:n]
    assert len(paths) == n
    return paths


def _fsdd(shared_data, name="3_jackson_0.wav"):
    return shared_data / "fsdd" / "recordings" / name


def test_real_clipart_loads_as_rgb(shared_data):
    for p in _clipart(shared_data):
        im = load_image(p)
        assert im.mode == "RGB" and im.size == (128, 128)
        arr = np.asarray(im)
        assert arr.std() > 0  # a drawing, not a blank canvas
        info = probe_image(p)
        assert info == ImageInfo("PNG", 128, 128)


def test_real_fsdd_resampled_to_requested_rate(shared_data):
    p = _fsdd(shared_data)
    info = probe_audio(p)
    assert info.sample_rate == 8000 and info.channels == 1 and info.frames > 0
    wav8 = load_audio(p, sample_rate=8000)
    wav16 = load_audio(p, sample_rate=16000)
    assert wav8.dtype == np.float32 and wav16.dtype == np.float32
    assert len(wav8) == info.frames
    assert abs(len(wav16) - 2 * info.frames) <= 1
    # same signal: energy preserved by resampling (within a few percent)
    assert np.mean(wav16 ** 2) == pytest.approx(np.mean(wav8 ** 2), rel=0.05)


def test_audio_max_seconds_reads_only_the_start(tmp_path):
    import soundfile as sf

    rate = 8000
    sig = np.linspace(-0.5, 0.5, 3 * rate, dtype=np.float32)
    sf.write(tmp_path / "long.wav", sig, rate)
    assert probe_audio(tmp_path / "long.wav").duration == pytest.approx(3.0)
    out = load_audio(tmp_path / "long.wav", sample_rate=rate, max_seconds=1.0)
    assert len(out) == rate
    np.testing.assert_allclose(out, sig[:rate], atol=1e-4)
    assert len(load_audio(tmp_path / "long.wav", sample_rate=rate, max_seconds=None)) == 3 * rate


def test_stereo_mixdown_is_channel_mean(tmp_path):
    import soundfile as sf

    left = np.full(1000, 0.5, dtype=np.float32)
    right = np.full(1000, -0.1, dtype=np.float32)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    out = load_audio(tmp_path / "st.wav", sample_rate=16000)
    np.testing.assert_allclose(out, 0.2, atol=1e-6)


def test_audio_with_nan_samples_refused(tmp_path):
    import soundfile as sf

    sig = np.zeros(800, dtype=np.float32)
    sig[10] = np.nan
    sf.write(tmp_path / "nan.wav", sig, 8000, subtype="FLOAT")
    with pytest.raises(DecodeError, match="NaN or infinite"):
        load_audio(tmp_path / "nan.wav")


def test_text_file_named_wav_refused(tmp_path):
    (tmp_path / "notes.wav").write_text("hello, not audio\n")
    with pytest.raises(DecodeError, match="not an audio file"):
        probe_audio(tmp_path / "notes.wav")


def test_bad_sample_rate_is_usage_error(shared_data):
    with pytest.raises(UsageError):
        load_audio(_fsdd(shared_data), sample_rate=0)


def test_resample_keeps_tone_frequency():
    t = np.arange(44100) / 44100
    wav = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    out = resample(wav, 44100, 16000)
    assert len(out) == 16000
    assert np.argmax(np.abs(np.fft.rfft(out))) == 1000  # 1 Hz bins over 1 s


def test_exif_orientation_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert Image.open(tmp_path / "rot.jpg").size == (40, 20)
    assert load_image(tmp_path / "rot.jpg").size == (20, 40)


def test_transparency_composited_on_white(tmp_path):
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    im.putpixel((0, 0), (10, 20, 30, 255))
    im.save(tmp_path / "alpha.png")
    arr = np.asarray(load_image(tmp_path / "alpha.png"))
    assert tuple(arr[0, 0]) == (10, 20, 30)
    assert tuple(arr[4, 4]) == (255, 255, 255)  # not black


def test_sixteen_bit_grey_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16)).save(tmp_path / "g16.png")
    arr = np.asarray(load_image(tmp_path / "g16.png"))
    assert arr.shape == (4, 4, 3) and 120 <= arr[0, 0, 0] <= 136  # mid grey, not white


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"),
                                     ("BMP", "bmp"), ("WEBP", "webp")])
def test_header_size_matches_pillow(tmp_path, fmt, ext):
    path = tmp_path / f"x.{ext}"
    Image.new("RGB", (37, 23), (1, 2, 3)).save(path, format=fmt)
    assert _header_size(path) == (fmt, 37, 23)
    assert probe_image(path) == ImageInfo(fmt, 37, 23)


def test_huge_jpeg_declared_size_refused_before_decoding(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width
    (tmp_path / "bomb.jpg").write_bytes(bytes(data))
    with pytest.raises(DecodeError, match=r"60000×60000 pixels > limit"):
        load_image(tmp_path / "bomb.jpg")


def test_custom_pixel_limits(tmp_path):
    Image.new("RGB", (50, 40)).save(tmp_path / "a.png")
    with pytest.raises(DecodeError, match=r"50×40 pixels > limit of 1,000"):
        load_image(tmp_path / "a.png", max_pixels=1000)
    with pytest.raises(DecodeError, match="each side must be at least 64"):
        load_image(tmp_path / "a.png", min_side=64)
    assert MIN_IMAGE_SIDE == 2
    Image.new("RGB", (2, 2)).save(tmp_path / "b.png")
    assert load_image(tmp_path / "b.png").size == (2, 2)  # the documented minimum is accepted


def test_folder_is_not_a_file(tmp_path):
    with pytest.raises(DecodeError, match="not a regular file"):
        load_image(tmp_path)


def test_corrupt_png_body_is_decode_error(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)
                    ).save(tmp_path / "c.png")
    data = bytearray((tmp_path / "c.png").read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 10: idat + 40] = b"\x00" * 30  # scramble compressed data, keep length
    (tmp_path / "c.png").write_bytes(bytes(data))
    with pytest.raises(DecodeError) as exc:
        load_image(tmp_path / "c.png")
    assert "\n" not in exc.value.reason


def test_audio_info_duration():
    assert AudioInfo("WAV", 8000, 1, 4000).duration == 0.5


def test_normalize_text():
    assert normalize_text("  Cafe\u0301\t au\u00a0lait \n") == "Caf\u00e9 au lait"
    assert normalize_text("") == ""
