"""Video encoders on real clips (MNIST digits + FSDD recordings made in tmp_path):
``frames:efficientnet-lite0`` (per-frame vectors, mean clip vector, frame cache, the feature
folder's side files) and ``audio:logmel`` (the audio track)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytestmark = pytest.mark.timeout(120)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from test_video import DATA, real_clip  # noqa: E402

from polymodal.core.errors import PolymodalError  # noqa: E402
from polymodal.features.cache.features import FeatureSet  # noqa: E402


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("venc")
    real_clip(d / "a.webm", digits=(7, 2, 4))
    real_clip(d / "b.mp4", digits=(1, 1))
    real_clip(d / "silent.mp4", digits=(3, 5), audio=False)
    data = (d / "a.webm").read_bytes()
    (d / "cut.webm").write_bytes(data[: len(data) // 5])
    rows = [{"id": "a", "video": "a.webm", "text": "seven two four"},
            {"id": "b", "video": "b.mp4", "text": "one one"},
            {"id": "s", "video": "silent.mp4", "text": "three five"},
            {"id": "cut", "video": "cut.webm", "text": "x"}]
    m = d / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def test_frames_encoder_side_files_and_cache(manifest, tmp_path):
    from polymodal.features.cache.store import FeatureStore, file_digest
    from polymodal.features.encode import encode_manifest
    from polymodal.features.encoders import build_encoder

    cache = tmp_path / "cache"
    res = encode_manifest(manifest, tmp_path / "f", cache_dir=cache, progress=False,
                          modalities=["video"])
    assert res.stats["video"].encoded == 3 and res.stats["video"].skipped == 1
    (bad,) = res.skipped
    assert (bad.row, bad.column) == (4, "video") and "cut.webm: video data is truncated" in bad.reason
    fs = res.features
    meta = fs.meta["modalities"]["video"]
    assert meta["name"] == "frames:efficientnet-lite0" and meta["frames"] == 3 + 2 + 2
    v, r, t = fs.frames("video")
    assert v.shape == (7, 1280) and r.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert t.tolist() == [0.0, 1.0, 2.0, 0.0, 1.0, 0.0, 1.0]
    clip, rows = fs.vectors("video")
    assert rows.tolist() == [0, 1, 2]
    # the clip vector is the mean of its frame vectors (float16 storage)
    np.testing.assert_allclose(np.asarray(clip[0], np.float32),
                               np.asarray(v[:3], np.float32).mean(0), atol=2e-3)
    # digits differ, so frames differ; "one one" repeats the same drawing: equal vectors
    f = np.asarray(v, np.float32)
    assert np.abs(f[0] - f[1]).mean() > 10 * np.abs(f[3] - f[4]).mean()
    # frame vectors are in the image encoder's store under (file digest, time in ms); frames
    # arrive decoded, so it is the full-decode (no JPEG drafting) image id
    img = build_encoder("efficientnet-lite0", modality="image", jpeg_draft=False)
    store = FeatureStore(cache, img.id)
    digest = file_digest(manifest.parent / "a.webm")
    got, ok = store.fetch([f"{digest}@0", f"{digest}@1000", f"{digest}@2000"], 1280)
    store.close()
    assert ok.all()
    np.testing.assert_array_equal(got.astype(np.float16), np.asarray(v[:3]))
    # a second encode decodes nothing and writes the same side files
    again = encode_manifest(manifest, tmp_path / "g", cache_dir=cache, progress=False,
                            modalities=["video"])
    assert again.stats["video"].cached == 3 and again.stats["video"].encoded == 0
    np.testing.assert_array_equal(np.asarray(again.features.frames("video")[0]), np.asarray(v))


def test_half_written_frame_files_are_refused(manifest, tmp_path):
    from polymodal.features.encode import encode_manifest

    out = tmp_path / "f"
    encode_manifest(manifest, out, cache_dir=tmp_path / "c", progress=False,
                    modalities=["video"])
    p = out / "video_frames_times.npy"
    p.write_bytes(p.read_bytes()[:-8])
    with pytest.raises(PolymodalError, match="half-written feature folder "
                                             r"\(video_frames_times.npy has"):
        FeatureSet.load(out)


def test_audio_track_encoder(manifest, tmp_path):
    from polymodal.features.encode import encode_manifest

    res = encode_manifest(manifest, tmp_path / "f", encoders={"video": "audio:logmel"},
                          cache_dir=tmp_path / "c", progress=False, modalities=["video"])
    fs = res.features
    assert fs.meta["modalities"]["video"]["name"] == "audio:logmel" and fs.dim("video") == 256
    reasons = {p.row: p.reason for p in res.skipped}
    assert reasons[3] == "silent.mp4: no audio stream in the file"
    assert "truncated" in reasons[4]
    v, rows = fs.vectors("video")
    assert rows.tolist() == [0, 1] and not fs.has_frames("video")
    assert np.abs(np.asarray(v[0], np.float32) - np.asarray(v[1], np.float32)).mean() > 0.1


def test_frame_bound_note_and_bad_names(manifest, tmp_path):
    from polymodal.core.errors import UsageError
    from polymodal.features.encoders import build_encoder

    enc = build_encoder("frames:efficientnet-lite0", modality="video", fps=2, max_frames=4,
                        cache_dir=str(tmp_path))
    assert enc.media_note(manifest.parent / "a.webm") == (
        "6 frames at 2 fps exceed the limit of 4 frames; sampled at 1.33 fps instead")
    assert enc.id.startswith("frames[efficientnet-lite0|") and "fps=2|max=4" in enc.id
    with pytest.raises(UsageError, match="encoder 'minilm' is a text encoder, not image"):
        build_encoder("frames:minilm", modality="video")
    with pytest.raises(UsageError, match="needs an argument: frames:<image encoder>"):
        build_encoder("frames", modality="video")
    assert DATA.is_dir()
