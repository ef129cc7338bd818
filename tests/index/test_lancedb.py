"""The on-disk LanceDB index: same API and results as exact, streamed writes, save / load."""
from __future__ import annotations

import json

import numpy as np
import pytest
from index_testdata import brute_force, clustered, names

from polymodal.core.errors import PolymodalError
from polymodal.index import ExactIndex, LanceIndex, build_index, load_index

pytest.importorskip("lancedb")
pytestmark = pytest.mark.timeout(60)


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def data():
    x = clustered(6_100, 32, clusters=40, seed=3)
    return x[100:], x[:100]


def test_small_index_is_a_flat_exact_scan(tmp_path):
    db = clustered(500, 16, clusters=5, seed=0)
    q = clustered(7, 16, clusters=5, seed=9)
    index = build_index(16, "lancedb", write_batch=128)
    for s in range(0, 500, 90):  # several adds, several table writes
        index.add(db[s: s + 90], names(500)[s: s + 90])
    scores, ids = index.search(q, 5)
    assert len(index) == 500 and not index.has_ann_index
    ref_s, ref_i = brute_force(db, q, 5, cosine=True)
    assert ids == [[f"v{i}" for i in row] for row in ref_i]
    np.testing.assert_allclose(scores, ref_s, atol=1e-5)
    one_s, one_ids = index.search(q[0], 3)  # one 1-D query: one row
    assert one_ids == [ids[0][:3]] and one_s.shape == (1, 3)
    index.save(tmp_path / "ix")
    back = load_index(tmp_path / "ix")
    assert isinstance(back, LanceIndex) and len(back) == 500
    assert back.search(q, 5)[1] == ids
    meta = json.loads((tmp_path / "ix" / "index.json").read_text())
    assert meta["kind"] == "lancedb" and meta["count"] == 500
    assert (tmp_path / "ix" / "lance" / "vectors.lance").is_dir()


def test_ivfpq_recall_and_scores_vs_exact(data, tmp_path):
    db, q = data
    exact = ExactIndex(32)
    exact.add(db, names(len(db)))
    truth = exact.search(q, 10)
    index = build_index(32, "lancedb", ivf_min=1000, path=tmp_path / "build")
    for s in range(0, len(db), 2500):
        index.add(db[s: s + 2500], names(len(db))[s: s + 2500])
    index.save(tmp_path / "build_ix")
    assert index.has_ann_index and index.nlist == 16 and len(index) == len(db)
    scores, ids = load_index(tmp_path / "build_ix").search(q, 10)
    assert scores.shape == (100, 10) and (np.diff(scores, axis=1) <= 1e-6).all()
    assert recall(ids, truth[1]) >= 0.95
    # refined scores are the exact cosines of the returned vectors
    pos = np.array([[int(i[1:]) for i in row] for row in ids])
    dbn = db / np.linalg.norm(db, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", qn, dbn[pos]), atol=1e-4)
    index.refine = 0  # PQ distances only: still a ranking, lower recall
    assert recall(index.search(q, 10)[1], truth[1]) < recall(ids, truth[1]) - 0.2


def test_duplicate_ids_across_batches_and_after_load(tmp_path):
    x = clustered(40, 8, clusters=2, seed=1)
    index = build_index(8, "lancedb", write_batch=10)
    index.add(x[:20], names(20))
    with pytest.raises(PolymodalError, match="duplicate id 'v3': already in the index"):
        index.add(x[20:22], ["new", "v3"])
    with pytest.raises(PolymodalError, match="duplicate id 'a'"):
        index.add(x[20:22], ["a", "a"])
    index.add(x[20:22], ["it's", "w"])  # quotes survive the SQL filter
    index.save(tmp_path / "ix")
    back = load_index(tmp_path / "ix")
    with pytest.raises(PolymodalError, match="duplicate id \"it's\""):
        back.add(x[30:31], ["it's"])
    back.add(x[30:31], ["fresh"])
    assert len(back) == 23 and back.search(x[30], 1)[1] == [["fresh"]]


def test_bad_directory_and_missing_table_are_one_line_errors(tmp_path):
    index = build_index(8, "lancedb")
    with pytest.raises(PolymodalError, match="cannot save an empty lancedb index"):
        index.save(tmp_path / "empty")
    index.add(clustered(5, 8, clusters=1), names(5))
    index.save(tmp_path / "ix")
    import shutil
    shutil.rmtree(tmp_path / "ix" / "lance")
    with pytest.raises(PolymodalError, match="vectors.lance: not found"):
        load_index(tmp_path / "ix")
