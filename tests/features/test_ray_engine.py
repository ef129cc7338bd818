"""``encode --engine ray``: Ray Data actors give the same feature folder and the same cache as
the local engine, on real drawings of the bundled OpenClipart sample plus one corrupt image."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from polymodal.core.errors import PolymodalError, UsageError

pytestmark = pytest.mark.timeout(240)

SAMPLE = Path(__file__).resolve().parents[2] / "src/polymodal/sample/openclipart/manifest.jsonl"
N_ROWS = 20


@pytest.fixture(scope="module")
def ray_local():
    """Ray on this machine with 2 CPUs (as the issue asks), shared by the tests below."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """20 real rows of the sample (absolute paths) and a row whose PNG is corrupt."""
    d = tmp_path_factory.mktemp("ray-manifest")
    rows = [json.loads(x) for x in SAMPLE.read_text().splitlines()[:N_ROWS]]
    for r in rows:
        r["image"] = str(SAMPLE.parent / r["image"])
    bad = d / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))  # a PNG header, then noise
    rows.insert(7, {"id": "broken", "image": str(bad), "text": ["a broken drawing"],
                    "label": "animals", "split": "train"})
    path = d / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cache(root: Path, name: str) -> Path:
    """A fresh feature cache whose exported model files are shared (not part of the test)."""
    c = root / name
    c.mkdir()
    (root / "models").mkdir(exist_ok=True)
    (c / "models").symlink_to(root / "models")
    return c


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow  # ~30 s: Ray's start and two actors loading both encoders
def test_ray_engine_writes_the_local_folder_and_cache(ray_local, manifest, tmp_path):
    from polymodal.features.cache.features import FeatureSet
    from polymodal.features.encode import encode_manifest

    local = encode_manifest(manifest, tmp_path / "local", cache_dir=_cache(tmp_path, "cl"),
                            progress=False)
    ray_cache = _cache(tmp_path, "cr")
    res = encode_manifest(manifest, tmp_path / "ray", cache_dir=ray_cache, progress=False,
                          engine="ray", engine_options={"actors": 2})
    # every file byte for byte: vectors (float16), row indices, skipped / notes, metadata
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    fs = FeatureSet.load(tmp_path / "ray")
    img, rows = fs.vectors("image")
    assert len(img) == N_ROWS and 7 not in rows.tolist()  # the broken row has no image vector
    assert np.abs(np.asarray(img, np.float32)).sum(1).min() > 0
    bad = [p for p in res.skipped if p.column == "image"]
    assert len(bad) == 1 and bad[0].row == 8 and "broken.png" in bad[0].reason
    assert [p.to_dict() for p in res.skipped] == [p.to_dict() for p in local.skipped]
    for m in ("image", "text"):
        a, b = res.stats[m], local.stats[m]
        assert (a.items, a.cached, a.encoded, a.skipped) == (b.items, b.cached, b.encoded,
                                                            b.skipped)
        assert a.encoded > 0 and a.cached == 0

    # the cache Ray filled is the local engine's cache: a later local encode encodes nothing
    again = encode_manifest(manifest, tmp_path / "again", cache_dir=ray_cache, progress=False)
    for m in ("image", "text"):
        s = again.stats[m]
        assert s.encoded == 0 and s.cached == s.items - s.skipped
    assert _files(tmp_path / "again") == _files(tmp_path / "local")


def test_ray_engine_options_are_checked_before_any_work(tmp_path):
    from polymodal.features.encode import encode_manifest
    from polymodal.features.engines import get_engine

    with pytest.raises(UsageError, match="--actors 0: must be at least 1"):
        get_engine("ray", options={"actors": 0})
    with pytest.raises(UsageError, match="--actors is an option of --engine ray"):
        encode_manifest(SAMPLE, tmp_path / "out", engine="local",
                        engine_options={"actors": 2})
    with pytest.raises(UsageError, match="unknown engine"):
        get_engine("spark")
    assert not (tmp_path / "out").exists()


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch):
    from polymodal.features.engines import get_engine

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(PolymodalError, match=r"polymodal\[ray\]"):
        get_engine("ray")
