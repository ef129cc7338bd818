"""whisper-tiny's torch encoder (issue 10): weights read from the CTranslate2 model.bin, the exact
forward against CT2, the silence-cached window against the exact padded window, batched
transcription against one clip at a time, on real FSDD clips."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("faster_whisper")

from polymodal.core.errors import PolymodalError  # noqa: E402
from polymodal.features.encoders.whisper import WhisperEncoder  # noqa: E402
from polymodal.features.encoders.whisper_torch import (SilenceCachedEncoder,  # noqa: E402
                                                       read_ct2_model)
from polymodal.tasks.transcribe import Transcriber  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def ct2():
    return WhisperEncoder(backend="ctranslate2", precision="fp32", threads=2)


@pytest.fixture(scope="module")
def ours():
    return WhisperEncoder(threads=2)


@pytest.fixture(scope="module")
def paths(shared_data):
    rec = shared_data / "fsdd" / "recordings"
    return [rec / f"{d}_{s}_1.wav" for s in ("george", "yweweler") for d in (0, 4, 7)]


def test_default_is_torch_with_own_id(ours, ct2):
    assert ours.resolved == ("torch", "fp32") and ours.cached is not None
    assert "|torch-silence-cached-margin200|window=30s|" in ours.id and ours.id != ct2.id
    assert "|ct2-float32|window=30s|" in ct2.id and ct2.cached is None


def test_exact_torch_forward_equals_ct2(ours, ct2, paths):
    mel, _ = ct2.log_mel(ct2.prepare(paths[0]))
    ref = np.asarray(ct2.whisper.encode(mel[None]))
    got = ours.cached.enc.forward(mel[None]).numpy()
    assert got.shape == ref.shape == (1, 1500, 384)
    assert np.abs(got - ref).max() < 1e-2, np.abs(got - ref).max()


def test_cached_window_with_everything_live_is_exact(ours, ct2, paths):
    """Margin 1500: every position is live, no cache is used: the exact forward."""
    full = SilenceCachedEncoder(ours.cached.enc, ours.n_mels, margin=1500)
    mel, content = ct2.log_mel(ct2.prepare(paths[1]))
    live = full.states(mel, content)
    exact = ours.cached.enc.forward(mel[None])[0]
    assert live.shape == (1500, 384)
    assert torch.allclose(live, exact, atol=1e-4)


def test_cached_features_close_to_padded_window(ours, ct2, paths):
    a, b = ours.encode(paths), ct2.encode(paths)
    cos = torch.nn.functional.cosine_similarity(a, b)
    assert cos.min().item() >= 0.98, cos
    # the live region only: far fewer positions than the window for a short clip
    _, content = ct2.log_mel(ct2.prepare(paths[0]))
    assert ours.cached.live(content) < 300


def test_batched_transcription_equals_one_by_one(paths):
    batched, single = Transcriber(threads=2, batch_size=8), Transcriber(threads=2, batch_size=1)
    waves = [batched.load(p) for p in paths]
    a, b = batched.transcribe_waves(waves), single.transcribe_waves(waves)
    assert a == b and len(a) == len(paths) and any(a)


def test_unreadable_model_file_is_one_line(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x06\x00\x00\x00\xff\xff")
    with pytest.raises(PolymodalError) as e:
        read_ct2_model(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
