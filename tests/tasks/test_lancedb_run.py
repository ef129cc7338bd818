"""``fit retrieval --index lancedb``: the run's index is a LanceDB table, and ``search`` and
``eval`` and ``serve`` give what the same run with an exact index gives (small N: a flat exact scan)."""
from __future__ import annotations

import json

import pytest
from tasks_testdata import write_features

from polymodal.cli import main
from polymodal.data.datasets import sample_path

pytest.importorskip("lancedb")
pytestmark = pytest.mark.timeout(90)


def test_lancedb_run_searches_and_evaluates_like_exact(tmp_path, capsys):
    manifest = sample_path("openclipart")
    feats = write_features(tmp_path / "features", manifest, {"text": 384, "image": 1280},
                           {"text": "minilm", "image": "efficientnet-lite0"})
    common = ["fit", "retrieval", "--manifest", str(manifest), "--features", str(feats),
              "--relevance", "caption_group", "--loss", "cca", "--dim", "8", "--no-report", "-q"]
    out = {}
    for kind in ("exact", "lancedb"):
        assert main([*common, "--index", kind, "--out", str(tmp_path / kind)]) == 0
        meta = json.loads((tmp_path / kind / "index" / "index.json").read_text())
        assert meta["kind"] == kind
        capsys.readouterr()
        assert main(["search", str(tmp_path / kind), "--text", "a red apple", "-k", "5",
                     "--json"]) == 0
        hits = json.loads(capsys.readouterr().out)
        assert main(["eval", str(tmp_path / kind), "--json", "-q"]) == 0
        out[kind] = hits, json.loads(capsys.readouterr().out)
    assert (tmp_path / "lancedb" / "index" / "lance" / "vectors.lance").is_dir()
    (ex_hits, ex_eval), (ld_hits, ld_eval) = out["exact"], out["lancedb"]
    assert [h["id"] for h in ld_hits] == [h["id"] for h in ex_hits] and len(ld_hits) == 5
    assert [h["score"] for h in ld_hits] == pytest.approx([h["score"] for h in ex_hits],
                                                          abs=1e-5)
    assert ld_eval == ex_eval
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from polymodal.serve.app import create_app

    with TestClient(create_app(tmp_path / "lancedb"), base_url="http://localhost") as c:
        served = c.post("/search", json={"text": "a red apple", "k": 5}).json()["hits"]
    assert [h["id"] for h in served] == [h["id"] for h in ex_hits]
