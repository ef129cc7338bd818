"""``POST /classify`` on a small real audio+image classification run, run-kind detection, and
the errors a user can provoke (each a 4xx with a message; the worker keeps answering)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytest.importorskip("httpx")

LIMIT_MB = 0.5


@pytest.fixture(scope="module")
def client(small_classify_run):
    from fastapi.testclient import TestClient

    from polymodal.serve.app import create_app

    with TestClient(create_app(small_classify_run, max_upload_mb=LIMIT_MB),
                    base_url="http://localhost") as c:
        yield c


@pytest.fixture(scope="module")
def rows(small_classify_run) -> dict[str, dict]:
    """Manifest rows by id, with the run's test prediction and confidence where it has one."""
    from polymodal.core.runfolder import RunFolder
    doc = RunFolder.open(small_classify_run).config  # paths resolved
    out = {r["id"]: r for r in map(json.loads, Path(doc["manifest"]).read_text().splitlines())}
    with open(small_classify_run / "predictions.csv") as fh:
        for p in csv.DictReader(fh):
            out[p["id"]]["pred"] = p
    return out


def _files(row: dict, *mods: str) -> dict:
    return {m: (Path(row[m]).name, Path(row[m]).read_bytes()) for m in mods}


def test_health_and_docs_describe_a_classification_run(client):
    h = client.get("/health").json()
    assert h["task"] == "classification" and h["endpoints"] == ["/classify"]
    assert h["modalities"] == ["audio", "image"] and h["method"] == "attention"
    assert len(h["labels"]) >= 5 and set(h["labels"]) <= {str(i) for i in range(10)}
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/classify" in spec["paths"] and "/search" not in spec["paths"]


def test_docs_work_offline(client):
    """With fastapi-offline installed /docs loads Swagger UI from this server, not a CDN."""
    pytest.importorskip("fastapi_offline")
    page = client.get("/docs").text
    assert "/docs-static/swagger-ui-bundle.js" in page and "cdn.jsdelivr" not in page
    js = client.get("/docs-static/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    for bad in ("/docs-static/../../config.yaml", "/docs-static/..%2F..%2Fconfig.yaml"):
        assert client.get(bad).status_code == 404


def test_both_modalities_reproduce_the_runs_test_predictions(client, rows):
    tested = [r for r in rows.values() if "pred" in r and r["pred"]["modalities"] == "audio+image"]
    assert len(tested) == 10
    for row in tested[:4]:
        r = client.post("/classify", files=_files(row, "image", "audio"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["modalities_given"] == ["audio", "image"] and body["modalities_missing"] == []
        probs = body["probabilities"]
        assert list(probs.values()) == sorted(probs.values(), reverse=True)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
        # the served path (decode + encode the uploaded files) gives the batch job's answer
        assert str(body["prediction"]) == row["pred"]["prediction"]
        assert max(probs.values()) == pytest.approx(float(row["pred"]["confidence"]), abs=0.02)
        w = body["modality_weights"]
        assert sum(w.values()) == pytest.approx(1.0, abs=1e-3) and min(w.values()) > 0
        assert body["latency_ms"] > 0


@pytest.mark.parametrize("given,missing", [("image", "audio"), ("audio", "image")])
def test_one_modality_counts_the_other_as_missing(client, rows, given, missing):
    row = next(r for r in rows.values() if "pred" in r)
    body = client.post("/classify", files=_files(row, given)).json()
    assert body["modalities_given"] == [given] and body["modalities_missing"] == [missing]
    assert body["modality_weights"][missing] == 0.0
    assert body["modality_weights"][given] == pytest.approx(1.0, abs=1e-4)
    assert str(body["prediction"]) in body["probabilities"]


def _wav() -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000), 8000, format="WAV")
    return buf.getvalue()


@pytest.mark.parametrize("case,status,words", [
    ("nothing", 400, ["audio", "image"]),
    ("text_on_av_run", 400, ["text"]),
    ("wav_as_image", 415, ["image", "tone.wav"]),
    ("bad_type", 415, [".txt"]),
    ("not_png", 422, ["digit.png"]),
    ("too_big", 413, ["MB"]),
])
def test_classify_errors(client, case, status, words):
    big = int(LIMIT_MB * 2**20) + 1000
    kw = {"nothing": {"data": {}},
          "text_on_av_run": {"data": {"text": "seven"}},
          "wav_as_image": {"files": {"image": ("tone.wav", _wav())}},
          "bad_type": {"files": {"audio": ("notes.txt", b"hello")}},
          "not_png": {"files": {"image": ("digit.png", b"not a png, just text")}},
          "too_big": {"files": {"image": ("big.png", b"\x89PNG" + b"0" * big)}}}[case]
    r = client.post("/classify", **kw)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert all(w in detail for w in words), detail
    assert "polymodal-upload" not in detail
    assert client.get("/health").json()["status"] == "ok"


def test_retrieval_endpoints_on_a_classification_run_say_why(client):
    for path in ("/search", "/search/file", "/embed", "/caption"):
        r = client.post(path, json={"text": "seven"})
        assert r.status_code == 400 and "classification run" in r.json()["detail"], path
    assert client.get("/thumb/av_00000").status_code == 404
    assert client.get("/media/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_classify_on_a_retrieval_run_says_why(small_run):
    from fastapi.testclient import TestClient

    from polymodal.serve.app import create_app

    with TestClient(create_app(small_run), base_url="http://localhost") as c:
        r = c.post("/classify", data={"text": "a cat"})
        assert r.status_code == 400 and "retrieval run" in r.json()["detail"]
        assert "fit classify" in r.json()["detail"]


def test_unservable_folders_are_clear_errors(tmp_path):
    from polymodal.core.errors import PolymodalError
    from polymodal.serve.app import create_app

    with pytest.raises(PolymodalError, match="not found"):
        create_app(tmp_path / "nope")
    with pytest.raises(PolymodalError, match="no config.yaml"):
        create_app(tmp_path)
    (tmp_path / "config.yaml").write_text("format_version: 2\ntask: generation\nconfig: {}\n")
    (tmp_path / "COMPLETE").write_text("")
    with pytest.raises(PolymodalError, match="cannot be served"):
        create_app(tmp_path)
