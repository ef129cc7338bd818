"""JPEG drafting (`load_image(draft_for=...)`, `SquareInput`) and decoding in processes
(`encode --decode processes`, `polymodal.features.decode_pool`), on a real photograph."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from polymodal.data.image_input import SquareInput
from polymodal.data.loaders import JPEG_DRAFT_FACTOR, load_image
from polymodal.features.cache.files import file_digest
from polymodal.features.decode_pool import CRASHED, decode_processes

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """scikit-learn's china.jpg (a real 640x427 photograph) enlarged to camera size, as JPEG."""
    from sklearn.datasets import load_sample_image

    out = tmp_path_factory.mktemp("photo") / "china.jpg"
    Image.fromarray(load_sample_image("china.jpg")).resize((2560, 1708), Image.BICUBIC).save(
        out, quality=90)
    return out


def test_jpeg_draft_keeps_twice_the_side_and_the_features(photo):
    full = load_image(photo)
    drafted = load_image(photo, draft_for=224)
    assert full.size == (2560, 1708)
    assert drafted.size == (1280, 854)  # 1/2 scale: 1/4 would leave 427 < 2 x 224
    assert min(drafted.size) >= JPEG_DRAFT_FACTOR * 224
    a = SquareInput(224, jpeg_draft=False)(photo).astype(float)
    b = SquareInput(224)(photo).astype(float)
    assert a.shape == b.shape == (224, 224, 3)
    assert 0 < np.abs(a - b).mean() < 2.0  # not the same decode, nearly the same pixels
    png = photo.with_suffix(".png")
    full.save(png)
    assert load_image(png, draft_for=224).size == full.size  # only JPEGs are drafted


def test_draft_changes_the_encoder_id_and_old_ids_rebuild_without_it():
    from polymodal.features.encoders.base import rebuild_encoder
    from polymodal.features.encoders.registry import build_encoder

    enc = build_encoder("pixels:16", modality="image")
    assert enc.id.endswith("|jpeg=draft2x")
    old = "pixels|size=16|layout=chw|scale=1/255"  # an id from before JPEG drafting
    again = rebuild_encoder("pixels:16", "image", expected_id=old)
    assert again.id == old and again.input.jpeg_draft is False


def _manifest(tmp: Path, photo: Path) -> Path:
    bad = tmp / "broken.jpg"
    bad.write_bytes(photo.read_bytes()[:5000])  # a truncated JPEG
    small = tmp / "small.png"
    Image.open(photo).resize((300, 200)).save(small)
    rows = [photo, small, bad, photo.with_suffix(".png")]
    if not rows[-1].exists():
        load_image(photo).save(rows[-1])
    m = tmp / "m.jsonl"
    m.write_text("".join(json.dumps({"id": i, "image": str(p)}) + "\n"
                         for i, p in enumerate(rows)), encoding="utf-8")
    return m


def test_processes_give_the_threads_vectors_and_skips(photo, tmp_path):
    from polymodal.features.encode import encode_manifest

    m = _manifest(tmp_path, photo)
    res = {}
    for how in ("threads", "processes"):
        out = tmp_path / how
        r = encode_manifest(m, out, encoders={"image": "pixels:24"}, cache_dir=tmp_path / f"c{how}",
                            progress=False, decode=how)
        res[how] = (np.load(out / "image.npy"), [(p.row, p.reason) for p in r.skipped])
    assert np.array_equal(res["threads"][0], res["processes"][0])
    assert res["threads"][1] == res["processes"][1]
    assert len(res["threads"][0]) == 3
    assert len(res["threads"][1]) == 1 and "truncated" in res["threads"][1][0][1]


def crash_on_small(item):
    """A decoder that kills its process on one file (as a crashing C decoder would)."""
    if Path(item).name == "small.png":
        os._exit(3)
    return SquareInput(8)(item)


def test_a_decoder_crash_costs_only_its_file(photo, tmp_path):
    m = _manifest(tmp_path, photo)
    paths = [Path(json.loads(x)["image"]) for x in m.read_text().splitlines()]
    items = [(file_digest(p), p) for p in paths]
    out = list(decode_processes(crash_on_small, "image", items, tmp_path, workers=2, depth=4))
    assert [k for k, _, _ in out] == [k for k, _ in items]  # in order, none lost
    reasons = {Path(p).name: err for (_, p), (_, _, err) in zip(items, out)}
    assert reasons["small.png"] == CRASHED
    assert reasons["china.jpg"] is None and reasons["china.png"] is None
    assert "truncated" in reasons["broken.jpg"]
