from __future__ import annotations

import numpy as np
import pytest

from polymodal.index import ExactIndex, build_index, load_index, topk_inner_product

from index_testdata import brute_force, names


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_exact_matches_brute_force(metric):
    rng = np.random.default_rng(0)
    db = rng.standard_normal((3000, 32)).astype(np.float32)
    q = rng.standard_normal((40, 32)).astype(np.float32)
    index = ExactIndex(32, metric, chunk_size=512)
    index.add(db, names(3000))
    scores, ids = index.search(q, 15)
    ref_s, ref_i = brute_force(db, q, 15, metric == "cosine")
    assert scores.dtype == np.float32 and scores.shape == (40, 15)
    assert ids == [[f"v{j}" for j in row] for row in ref_i]
    np.testing.assert_allclose(scores, ref_s, rtol=1e-5, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_cosine_normalises_and_ip_does_not():
    v = np.array([[3.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    cos, ip = ExactIndex(2, "cosine"), ExactIndex(2, "ip")
    cos.add(v, ["a", "b"])
    ip.add(v, ["a", "b"])
    q = np.array([[1.0, 1.1]], dtype=np.float32)
    assert cos.search(q, 2)[1] == [["b", "a"]]  # angle decides
    assert ip.search(q, 2)[1] == [["a", "b"]]  # length decides
    np.testing.assert_allclose(cos.search(q, 1)[0][0, 0], 1.1 / np.hypot(1, 1.1), rtol=1e-6)


def test_chunking_gives_same_results_as_one_block():
    rng = np.random.default_rng(1)
    db = rng.standard_normal((2001, 16)).astype(np.float32)
    q = rng.standard_normal((300, 16)).astype(np.float32)
    s1, i1 = topk_inner_product(q, db, 20, chunk_size=len(db))
    s2, i2 = topk_inner_product(q, db, 20, chunk_size=97)  # ragged last block, k < chunk
    s3, i3 = topk_inner_product(q, db, 20, chunk_size=13)  # blocks smaller than k
    assert (i1 == i2).all() and (i1 == i3).all()
    np.testing.assert_allclose(s1, s2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s1, s3, rtol=1e-6, atol=1e-6)


def test_ties_keep_insertion_order_across_chunks():
    v = np.eye(4, dtype=np.float32)
    db = np.concatenate([v[[1, 0, 2, 0, 3, 0]]])  # three copies of e0 at rows 1, 3, 5
    index = ExactIndex(4, "ip", chunk_size=2)
    index.add(db, ["b", "first", "c", "second", "d", "third"])
    scores, ids = index.search(v[0], 3)
    assert ids == [["first", "second", "third"]]
    assert scores.tolist() == [[1.0, 1.0, 1.0]]


def test_incremental_add_equals_single_add():
    rng = np.random.default_rng(2)
    db = rng.standard_normal((1000, 8)).astype(np.float32)
    q = rng.standard_normal((10, 8)).astype(np.float32)
    once, parts = ExactIndex(8), ExactIndex(8)
    once.add(db, names(1000))
    for s in range(0, 1000, 137):
        parts.add(db[s: s + 137], names(1000)[s: s + 137])
    parts.add(np.empty((0, 8), np.float32), [])
    assert len(parts) == 1000
    assert once.search(q, 5)[1] == parts.search(q, 5)[1]
    np.testing.assert_array_equal(once.vectors, parts.vectors)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    db = rng.standard_normal((500, 12)).astype(np.float32)
    q = rng.standard_normal((7, 12)).astype(np.float32)
    index = build_index(12, "exact", "ip", chunk_size=100)
    index.add(db, [f"ünïcode-{i}" for i in range(500)])
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == \
        ["ids.json", "index.json", "vectors.npy"]
    loaded = load_index(tmp_path / "idx")
    assert isinstance(loaded, ExactIndex) and loaded.metric == "ip" and loaded.dim == 12
    assert loaded.chunk_size == 100 and loaded.ids == index.ids
    s1, i1 = index.search(q, 9)
    s2, i2 = loaded.search(q, 9)
    assert i1 == i2 and np.array_equal(s1, s2)
    loaded.add(db[:1] * 2, ["extra"])  # still incremental after load
    assert loaded.search(db[:1] * 2, 1)[1] == [["extra"]]


def test_auto_kind_rule():
    from polymodal.index import AUTO_EXACT_MAX, choose_kind
    assert build_index(4).kind == "exact"
    assert build_index(4, expected_size=AUTO_EXACT_MAX - 1).kind == "exact"
    assert choose_kind(AUTO_EXACT_MAX) == "hnsw"
    assert build_index(4, expected_size=AUTO_EXACT_MAX).kind == "hnsw"


def test_saving_another_kind_over_a_directory_replaces_it(tmp_path):
    pytest.importorskip("faiss")
    x = np.random.default_rng(5).standard_normal((50, 4)).astype(np.float32)
    exact = build_index(4, "exact")
    exact.add(x, names(50))
    exact.save(tmp_path)
    hnsw = build_index(4, "hnsw")
    hnsw.add(x[:20], names(20, "h"))
    hnsw.save(tmp_path)
    assert not (tmp_path / "vectors.npy").exists()
    loaded = load_index(tmp_path)
    assert loaded.kind == "hnsw" and len(loaded) == 20
