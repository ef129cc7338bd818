"""whisper-tiny on real FSDD recordings (each clip is a full 30 s window: keep the count small)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.features.encoders.base import Encoder
from polymodal.features.encoders.registry import build_encoder
from polymodal.features.encoders.whisper import WINDOW_FRAMES, WhisperEncoder, pad_frames


@pytest.fixture(scope="module")
def whisper() -> WhisperEncoder:
    return build_encoder("whisper-tiny")


@pytest.fixture(scope="module")
def digits(shared_data, whisper):
    rec = shared_data / "fsdd" / "recordings"
    paths = [rec / f"{d}_nicolas_{i}.wav" for d in (1, 5, 9) for i in (0, 1)]
    labels = np.repeat([1, 5, 9], 2)
    return paths, labels, whisper.encode(paths)


def test_shape_and_protocol(whisper, digits):
    paths, _, x = digits
    assert isinstance(whisper, Encoder)
    assert whisper.dim == 384 and whisper.modality == "audio"
    assert "pool=mean-content" in whisper.id
    assert x.shape == (len(paths), 384) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    single = whisper.encode(paths[:1])
    assert torch.nn.functional.cosine_similarity(single, x[:1]).item() > 0.9999


def test_same_digit_closer_than_different(digits):
    _, labels, x = digits
    x = torch.nn.functional.normalize(x, dim=1).numpy()
    sim = x @ x.T
    same = (labels[:, None] == labels[None]) & ~np.eye(len(labels), dtype=bool)
    different = labels[:, None] != labels[None]
    assert sim[same].mean() > sim[different].mean() + 0.03


def test_pooling_ignores_padding(whisper, digits):
    """Content frames of a 1 s clip are ~100 of 3000: the pooled vector must differ clearly
    from a mean over the whole (mostly padding) window."""
    paths, _, x = digits
    wav = whisper.prepare(paths[0])
    mel, content = whisper.log_mel(wav)
    assert mel.shape[1] == WINDOW_FRAMES and 0 < content < 300
    full = whisper._encode(mel[None], [WINDOW_FRAMES])
    assert torch.nn.functional.cosine_similarity(full, x[:1]).item() < 0.99


def test_pad_frames():
    f = np.ones((80, 10), np.float32)
    assert pad_frames(f, 16).shape == (80, 16) and pad_frames(f, 16)[:, 10:].sum() == 0
    assert pad_frames(np.ones((80, 20), np.float32), 16).shape == (80, 16)
