from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from index_testdata import names

from polymodal.core.errors import PolymodalError, UsageError
from polymodal.index import build_index, load_index

KINDS = ["exact", "hnsw", "ivfpq"]


def filled(kind: str, n: int = 300, dim: int = 8):
    index = build_index(dim, kind)
    index.add(np.random.default_rng(0).standard_normal((n, dim)), names(n))
    return index


@pytest.mark.parametrize("kind", KINDS)
def test_duplicate_ids(kind):
    index = filled(kind)
    with pytest.raises(PolymodalError, match="duplicate id 'v3': already in the index"):
        index.add(np.ones((1, 8)), ["v3"])
    with pytest.raises(PolymodalError, match="duplicate id 'x' at position 1"):
        index.add(np.ones((2, 8)), ["x", "x"])
    assert len(index) == 300  # nothing half-added


@pytest.mark.parametrize("kind", KINDS)
def test_dim_mismatch_names_both_dims(kind):
    index = filled(kind)
    with pytest.raises(PolymodalError, match="vectors have dim 5 but the index has dim 8"):
        index.add(np.ones((2, 5)), ["a", "b"])
    with pytest.raises(PolymodalError, match="queries have dim 9 but the index has dim 8"):
        index.search(np.ones((1, 9)), 1)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_k(kind):
    index = filled(kind)
    for k in (0, -3):
        with pytest.raises(UsageError, match=f"k must be >= 1, got k={k}"):
            index.search(np.ones(8), k)
    with pytest.raises(UsageError, match="k=301 exceeds index size 300"):
        index.search(np.ones(8), 301)
    with pytest.raises(UsageError, match="k must be an integer"):
        index.search(np.ones(8), 2.5)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_index(kind):
    index = build_index(8, kind)
    with pytest.raises(PolymodalError, match="cannot search an empty index"):
        index.search(np.ones(8), 1)
    assert len(index) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_bad_vectors(kind):
    index = build_index(4, kind)
    with pytest.raises(PolymodalError, match="got 2 vectors but 1 ids"):
        index.add(np.ones((2, 4)), ["a"])
    bad = np.ones((3, 4))
    bad[2, 1] = np.nan
    with pytest.raises(PolymodalError, match="vectors row 2 contains NaN or inf"):
        index.add(bad, ["a", "b", "c"])
    with pytest.raises(PolymodalError, match="vectors row 1 is all zeros"):
        index.add(np.array([[1, 0, 0, 0], [0, 0, 0, 0]]), ["a", "b"])
    with pytest.raises(PolymodalError, match="ids must be strings; position 0 is int"):
        index.add(np.ones((1, 4)), [7])
    with pytest.raises(PolymodalError, match="2-D array"):
        index.add(np.ones((1, 1, 4)), ["a"])
    assert len(index) == 0


def test_build_index_bad_arguments():
    with pytest.raises(UsageError, match="unknown index kind 'flat'"):
        build_index(8, "flat")
    with pytest.raises(UsageError, match="unknown metric 'l2'"):
        build_index(8, metric="l2")
    with pytest.raises(UsageError, match="dim must be a positive integer"):
        build_index(0)
    with pytest.raises(UsageError, match="bad parameter for a hnsw index"):
        build_index(8, "hnsw", nprobe_typo=3)


def test_missing_faiss_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(PolymodalError, match=r"pip install 'polymodal\[faiss\]'"):
        build_index(8, "hnsw")
    with pytest.warns(UserWarning, match="faiss is not installed"):
        assert build_index(8, expected_size=10**6).kind == "exact"


@pytest.mark.parametrize("kind", KINDS)
def test_load_missing_or_corrupt(tmp_path, kind):
    with pytest.raises(PolymodalError, match="index directory not found"):
        load_index(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolymodalError, match="index.json: not found"):
        load_index(tmp_path / "empty")

    d = filled(kind).save(tmp_path / "idx")
    data_file = d / ("vectors.npy" if kind == "exact" else "faiss.index")
    good_meta = (d / "index.json").read_text()

    data_file.write_bytes(data_file.read_bytes()[:100])  # truncated
    with pytest.raises(PolymodalError, match=f"{data_file.name}: corrupt"):
        load_index(d)
    data_file.unlink()
    with pytest.raises(PolymodalError, match=f"{data_file.name}: not found"):
        load_index(d)

    d = filled(kind).save(tmp_path / "idx")
    (d / "index.json").write_text("{not json")
    with pytest.raises(PolymodalError, match="index.json: corrupt index metadata"):
        load_index(d)
    meta = json.loads(good_meta)
    (d / "index.json").write_text(json.dumps({**meta, "count": 299}))
    with pytest.raises(PolymodalError, match=r"(vectors.npy|faiss.index): .*299"):
        load_index(d)
    (d / "index.json").write_text(good_meta)
    (d / "ids.json").write_text(json.dumps(names(299)))
    with pytest.raises(PolymodalError, match="ids.json: has 299 ids but index.json says 300"):
        load_index(d)
    (d / "ids.json").write_text(json.dumps(names(299) + ["v0"]))
    with pytest.raises(PolymodalError, match="ids.json: corrupt ids .*duplicate id 'v0'"):
        load_index(d)
    (d / "ids.json").unlink()
    with pytest.raises(PolymodalError, match="ids.json: not found"):
        load_index(d)


def test_load_kind_mismatch(tmp_path):
    d = filled("hnsw").save(tmp_path / "idx")
    meta = json.loads((d / "index.json").read_text())
    (d / "index.json").write_text(json.dumps({**meta, "kind": "ivfpq", "params": {}}))
    with pytest.raises(PolymodalError, match="IndexHNSWFlat, which does not match kind 'ivfpq'"):
        load_index(d)
    (d / "index.json").write_text(json.dumps({**meta, "kind": "annoy"}))
    with pytest.raises(PolymodalError, match="unknown index kind 'annoy'"):
        load_index(d)
