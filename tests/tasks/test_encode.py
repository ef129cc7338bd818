"""The encode pipeline: caching, re-encoding on change, skipping bad cells, output layout.

Uses a tiny real-but-cheap encoder (colour histogram) so the pipeline is tested without loading
pretrained models; the pretrained encoders have their own tests.
"""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from polymodal.features.cache.features import FeatureSet
from polymodal.data.loaders import load_image
from polymodal.features.encoders.base import encode_items
from polymodal.features.encode import encode_manifest

from encoders_testdata import WordEncoder  # tests/ is on sys.path (tests/conftest.py)


class HistEncoder:
    """8-bin-per-channel colour histogram of an image; counts calls to encode_prepared."""

    name = "hist"
    modality = "image"
    dim = 24
    batch_size = 4

    def __init__(self):
        self.encoded = 0

    @property
    def id(self) -> str:
        return "hist|bins=8"

    def prepare(self, item):
        return np.asarray(load_image(item))

    def encode_prepared(self, batch):
        self.encoded += len(batch)
        out = [np.concatenate([np.histogram(a[..., c], bins=8, range=(0, 256))[0] for c in range(3)])
               for a in batch]
        return torch.tensor(np.stack(out), dtype=torch.float32) / 1000.0

    def encode(self, items):
        return encode_items(self, items)


@pytest.fixture
def small_manifest(tmp_path, shared_data):
    src = shared_data / "openclipart"
    rows = [json.loads(line) for line in (src / "captions.jsonl").open()][:12]
    (tmp_path / "img").mkdir()
    out = []
    for i, r in enumerate(rows):
        dst = tmp_path / "img" / f"{i}.png"
        shutil.copy(src / r["image"], dst)
        out.append({"id": f"d{i}", "image": f"img/{i}.png", "text": [r["title"], r["id"]]})
    out[3]["image"] = "img/missing.png"
    (tmp_path / "img" / "bad.png").write_bytes(b"not a png")
    out[5]["image"] = "img/bad.png"
    out[7]["text"] = ""
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in out))
    return m


def test_encode_caches_and_skips(small_manifest, tmp_path):
    cache = tmp_path / "cache"
    img, txt = HistEncoder(), WordEncoder()
    res = encode_manifest(small_manifest, tmp_path / "f1", encoders={"image": img, "text": txt},
                          cache_dir=cache, progress=False)
    good = {hashlib.md5((small_manifest.parent / "img" / f"{i}.png").read_bytes()).hexdigest()
            for i in range(12) if i not in (3, 5)}
    assert img.encoded == len(good)  # identical files are encoded once; missing/bad skipped
    reasons = {(p.row, p.column): p.reason for p in res.skipped}
    assert "file not found" in reasons[(4, "image")]
    assert "not an image" in reasons[(6, "image")] or "decode" in reasons[(6, "image")]
    fs = FeatureSet.load(tmp_path / "f1")
    assert fs.ids == [f"d{i}" for i in range(12)]
    v, rows = fs.vectors("image")
    assert v.shape == (10, 24) and 3 not in rows and 5 not in rows
    tv, trows = fs.vectors("text")
    assert len(tv) == 22 and list(trows).count(7) == 0  # two captions per row, row 7 has none
    skipped = [json.loads(line) for line in (tmp_path / "f1" / "skipped.jsonl").open()]
    assert {(s["row"], s["column"]) for s in skipped} == {(4, "image"), (6, "image")}

    # second run: nothing encoded, same vectors
    img2, txt2 = HistEncoder(), WordEncoder()
    encode_manifest(small_manifest, tmp_path / "f2", encoders={"image": img2, "text": txt2},
                    cache_dir=cache, progress=False)
    assert img2.encoded == 0 and txt2.encoded == 0
    np.testing.assert_array_equal(np.asarray(FeatureSet.load(tmp_path / "f2").vectors("image")[0]),
                                  np.asarray(v))

    # change one image: exactly one re-encoded
    first = small_manifest.parent / "img" / "0.png"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(first)
    img3 = HistEncoder()
    encode_manifest(small_manifest, tmp_path / "f3", encoders={"image": img3}, cache_dir=cache,
                    progress=False)
    assert img3.encoded == 1
    per_row, present = FeatureSet.load(tmp_path / "f3").per_row("image")
    assert present.sum() == 10 and not present[3]
    assert per_row[0, 7] > 0.9  # the red square lands in the top red bin


def test_feature_cache_never_stores_nonfinite(tmp_path):
    from polymodal.features.cache.store import FeatureStore

    st = FeatureStore(tmp_path, "x")
    with pytest.raises(ValueError):
        st.put(["a"], np.array([[np.nan, 1.0]]))
    assert len(st) == 0
    st.put(["a", "b"], np.ones((2, 2)))
    assert len(st) == 2 and not list(tmp_path.rglob("*.tmp*"))
