"""logmel: filterbank correctness on synthetic tones, digit structure on real FSDD recordings."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from polymodal.features.encoders.audio import LogMelEncoder, hz_to_mel, log_mel, mel_filterbank, mel_to_hz
from polymodal.features.encoders.base import Encoder
from polymodal.features.encoders.registry import build_encoder
from polymodal.core.errors import DecodeError


@pytest.fixture(scope="module")
def logmel() -> LogMelEncoder:
    return build_encoder("logmel")


def fsdd(shared_data, speakers, digits, takes):
    rec = shared_data / "fsdd" / "recordings"
    items = [(rec / f"{d}_{s}_{i}.wav", d) for s in speakers for d in digits for i in takes]
    return [p for p, _ in items], np.array([d for _, d in items])


def test_mel_scale_roundtrip_and_filters():
    hz = np.array([0.0, 440.0, 1000.0, 7999.0])
    assert np.allclose(mel_to_hz(hz_to_mel(hz)), hz)
    fb = mel_filterbank(16000, 400, 64)
    assert fb.shape == (64, 201)
    assert (fb.max(axis=1) > 0).all()  # no empty band at 64 bands / 400-point FFT
    peaks = fb.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] > peaks[0]


def test_tone_lands_in_the_right_band():
    sr, fb = 16000, mel_filterbank(16000, 400, 64)
    centers = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(8000), 66))[1:-1]
    t = np.arange(sr) / sr
    for freq in (300.0, 1000.0, 3000.0):
        spec = log_mel(np.sin(2 * np.pi * freq * t).astype(np.float32), fb, 400, 160)
        band = spec.mean(axis=0).argmax()
        assert abs(centers[band] - freq) < 0.1 * freq + 60


def test_shape_and_protocol(logmel, shared_data):
    paths, _ = fsdd(shared_data, ["theo"], [0, 7], [0])
    assert isinstance(logmel, Encoder)
    assert logmel.dim == 256 and "mels=64" in logmel.id and "sr=16000" in logmel.id
    x = logmel.encode(paths)
    assert x.shape == (2, 256) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(logmel.encode(paths[:1])[0], x[0])


def test_same_digit_same_speaker_closer(logmel, shared_data):
    paths, labels = fsdd(shared_data, ["george", "jackson"], [0, 1, 4, 7], [0, 1, 2])
    x = logmel.encode(paths).numpy()
    speakers = np.repeat([0, 1], len(paths) // 2)
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
    same = (labels[:, None] == labels[None]) & (speakers[:, None] == speakers[None])
    same &= ~np.eye(len(labels), dtype=bool)
    different = labels[:, None] != labels[None]
    assert dist[same].mean() < 0.75 * dist[different].mean()


def test_short_and_bad_audio(logmel, tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, np.random.default_rng(0).normal(size=100).astype(np.float32), 8000)
    assert torch.isfinite(logmel.encode([short])).all()
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(DecodeError, match="empty.wav"):
        logmel.prepare(empty)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(DecodeError, match="junk.wav"):
        logmel.prepare(junk)
