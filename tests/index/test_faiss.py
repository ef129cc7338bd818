from __future__ import annotations

import numpy as np
import pytest
from index_testdata import clustered, names

from polymodal.core.errors import PolymodalError
from polymodal.index import ExactIndex, FaissIndex, build_index, load_index

pytest.importorskip("faiss")


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def truth(data20k):
    db, q = data20k
    exact = ExactIndex(db.shape[1])
    exact.add(db, names(len(db)))
    return exact.search(q, 10)


@pytest.fixture(scope="module")
def hnsw(data20k):
    db, _ = data20k
    index = build_index(db.shape[1], "hnsw")
    for s in range(0, len(db), 7000):  # incremental adds
        index.add(db[s: s + 7000], names(len(db))[s: s + 7000])
    return index


def test_hnsw_recall_vs_exact(hnsw, truth, data20k):
    db, q = data20k
    scores, ids = hnsw.search(q, 10)
    assert len(hnsw) == 20_000 and scores.shape == (200, 10)
    assert recall(ids, truth[1]) >= 0.9
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    # each score is the cosine similarity of the query and the returned vector
    unit = db / np.linalg.norm(db, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    rows = np.array([[int(i[1:]) for i in r] for r in ids])
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", qn, unit[rows]), atol=1e-4)


def test_hnsw_ef_search_trades_recall(hnsw, truth, data20k):
    _, q = data20k
    hnsw.ef_search = 10
    low = recall(hnsw.search(q, 10)[1], truth[1])
    hnsw.ef_search = 128
    high = recall(hnsw.search(q, 10)[1], truth[1])
    hnsw.ef_search = 64
    assert high >= low and high >= 0.95


def test_ivfpq_recall_and_nprobe(data20k, truth):
    db, q = data20k
    index = build_index(db.shape[1], "ivfpq", refine=8, train_size=3500)
    index.add(db[:3000], names(20_000)[:3000])  # below train_size: buffered
    assert not index.is_trained
    index.add(db[3000:], names(20_000)[3000:])  # reaches train_size: trains, adds all
    assert index.is_trained and len(index) == 20_000
    index.nprobe = 1
    r1 = recall(index.search(q, 10)[1], truth[1])
    index.nprobe = 32
    r32 = recall(index.search(q, 10)[1], truth[1])
    assert r32 > r1 and r32 >= 0.9


@pytest.mark.parametrize("kind,params", [("hnsw", {}), ("ivfpq", {"nprobe": 4, "refine": 0}),
                                         ("ivfpq", {"refine": 4})])
def test_save_load_round_trip(tmp_path, kind, params):
    x = clustered(3000, 32, clusters=10, seed=4)
    index = build_index(32, kind, "cosine", **params)
    index.add(x[:2000], names(2000, "a"))
    index.add(x[2000:2990], names(990, "b"))
    q = x[2990:]
    s1, i1 = index.search(q, 5)
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == \
        ["faiss.index", "ids.json", "index.json"]
    loaded = load_index(tmp_path / "idx")
    assert isinstance(loaded, FaissIndex) and loaded.kind == kind and len(loaded) == 2990
    assert loaded.params == index.params and loaded.ids == index.ids
    s2, i2 = loaded.search(q, 5)
    assert i1 == i2
    np.testing.assert_allclose(s1, s2, rtol=1e-6)
    loaded.add(q[:1] * 3, ["new"])  # incremental after load
    assert loaded.search(q[:1], 1)[1] == [["new"]] or kind == "ivfpq"
    assert "new" in loaded.search(q[:1], 10)[1][0]


def test_ivfpq_too_few_vectors_is_a_clear_error():
    index = build_index(16, "ivfpq")
    index.add(np.random.default_rng(0).standard_normal((50, 16)), names(50))
    with pytest.raises(PolymodalError, match="needs at least 256 vectors to train"):
        index.search(np.ones(16), 1)


def test_ivfpq_short_rows_when_too_few_vectors_visited():
    x = clustered(600, 16, clusters=30, seed=5)
    index = build_index(16, "ivfpq", "cosine", nlist=64, nprobe=1, pq_m=4)
    index.add(x, names(600))
    scores, ids = index.search(x[:20], 100)  # one list of ~10 vectors cannot give 100
    lengths = np.array([len(r) for r in ids])
    assert (lengths < 100).all() and (lengths > 0).all()
    assert np.isneginf(scores[np.arange(100)[None, :] >= lengths[:, None]]).all()
    assert np.isfinite(scores[np.arange(100)[None, :] < lengths[:, None]]).all()
