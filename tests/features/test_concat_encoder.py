"""concat:<a>+<b> on real FSDD recordings: each part's unit-length vector side by side."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.core.errors import PolymodalError, UsageError
from polymodal.features.encoders.backends import split_backend_id
from polymodal.features.encoders.base import rebuild_encoder
from polymodal.features.encoders.registry import build_encoder, check_encoder


@pytest.fixture(scope="module")
def clips(shared_data):
    rec = shared_data / "fsdd" / "recordings"
    return [rec / f"{d}_jackson_0.wav" for d in (0, 3, 7)]


def test_parts_side_by_side(clips):
    cat = build_encoder("concat:logmel+whisper-tiny", modality="audio")
    a, b = build_encoder("logmel"), build_encoder("whisper-tiny")
    x = cat.encode(clips)
    assert cat.dim == a.dim + b.dim == x.shape[1] and x.shape[0] == 3
    left, right = x[:, :a.dim], x[:, a.dim:]
    torch.testing.assert_close(left, torch.nn.functional.normalize(a.encode(clips), dim=-1))
    torch.testing.assert_close(right, torch.nn.functional.normalize(b.encode(clips), dim=-1),
                               rtol=1e-4, atol=1e-5)
    assert np.allclose(left.norm(dim=1), 1) and np.allclose(right.norm(dim=1), 1)
    # the id names both parts (the cache key changes with either) and is not read as a backend
    assert a.id in cat.id and b.id in cat.id
    assert split_backend_id(cat.id) == (cat.id, None)
    assert rebuild_encoder(cat.name, "audio", cat.id).id == cat.id


def test_bad_names_are_one_line_errors():
    for name, says in [("concat:logmel", "two or more"), ("concat:logmel+", "two or more"),
                       ("concat:logmel+minilm", "text encoder, not audio"),
                       ("concat:logmel+nosuch", "nosuch")]:
        with pytest.raises(UsageError, match=says):
            check_encoder(name, "audio")


def test_a_bad_file_fails_its_row(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt not really")
    cat = build_encoder("concat:logmel+logmel", modality="audio")
    with pytest.raises(PolymodalError, match="bad.wav"):
        cat.encode([bad])
