"""The HTTP API on a small real retrieval run: search by text and by file, embed, media, and
every error a user can provoke (each answered with a status and a message, never a crash)."""
from __future__ import annotations

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
def client(small_run):
    from fastapi.testclient import TestClient

    from polymodal.serve.app import create_app

    app = create_app(small_run, max_upload_mb=LIMIT_MB)
    with TestClient(app, base_url="http://localhost") as c:
        yield c


@pytest.fixture(scope="module")
def indexed(small_run) -> list[dict]:
    """The manifest rows of the small run (every one is in the index)."""
    from polymodal.tasks.retrieval.predict import load_run

    manifest = load_run(small_run).config.manifest
    return [json.loads(line) for line in Path(manifest).read_text().splitlines()]


def _png(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def test_health_describes_the_run(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["task"] == "retrieval"
    assert (h["query"], h["target"]) == ("text", "image")
    assert h["index_size"] == 64 and h["max_upload_mb"] == LIMIT_MB


def test_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for element in ('id="q"', 'id="file"', 'id="grid"', 'id="status"', 'name="mode"'):
        assert element in r.text


def test_text_search_returns_k_ranked_hits_with_thumbnails(client):
    from PIL import Image

    r = client.post("/search", json={"text": "a red apple", "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    hits = body["hits"]
    assert [h["rank"] for h in hits] == list(range(1, 8))
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0001 <= s <= 1.0001 for s in scores)
    assert len({h["row_id"] for h in hits}) == 7
    assert body["latency_ms"] > 0
    for h in hits:
        t = client.get(h["thumbnail"])
        assert t.status_code == 200 and t.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(t.content)) as im:
            assert max(im.size) <= 160 and im.format == "PNG"


def test_media_is_the_indexed_file(client, indexed):
    row = indexed[3]
    r = client.get(f"/media/{row['id']}")
    assert r.status_code == 200 and r.content == _png(row["image"])


def test_image_upload_finds_the_same_drawing(client, indexed):
    for row in (indexed[0], indexed[-1]):  # a training and a test drawing
        r = client.post("/search/file", files={"file": ("query.png", _png(row["image"]),
                                                        "image/png")}, data={"k": "5"})
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert len(hits) == 5
        assert row["id"] in [h["row_id"] for h in hits[:3]]
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_upload_without_suffix_uses_the_content_type(client, indexed):
    row = indexed[5]
    r = client.post("/search/file", files={"file": ("blob", _png(row["image"]), "image/png")},
                    data={"k": "3"})
    assert r.status_code == 200, r.text
    assert row["id"] in [h["row_id"] for h in r.json()["hits"]]


def test_embed_text_json_and_form_agree_and_match_search_scores(client):
    a = client.post("/embed", json={"text": "a guitar"}).json()
    b = client.post("/embed", data={"text": "a guitar"}).json()
    assert a["modality"] == "text" and a["dim"] == len(a["vector"]) == 64
    va, vb = np.array(a["vector"]), np.array(b["vector"])
    np.testing.assert_allclose(va, vb, atol=1e-6)
    assert np.linalg.norm(va) == pytest.approx(1.0, abs=1e-3)
    # the search score of the top hit is the dot product of the two shared-space vectors
    top = client.post("/search", json={"text": "a guitar", "k": 1}).json()["hits"][0]
    img = client.get(top["media"]).content
    e = client.post("/embed", files={"file": ("x.png", img, "image/png")}).json()
    assert e["modality"] == "image" and e["dim"] == 64
    assert float(va @ np.array(e["vector"])) == pytest.approx(top["score"], abs=1e-3)


def _wav_bytes() -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    t = np.arange(8000) / 8000
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 440 * t), 8000, format="WAV")
    return buf.getvalue()


@pytest.mark.parametrize("case", ["too_big_header", "too_big_body", "bad_type", "not_png",
                                  "empty_file", "audio_on_image_run"])
def test_upload_errors(client, case):
    big = int(LIMIT_MB * 2**20)
    files = {
        "too_big_header": ("big.png", b"\x89PNG" + b"0" * (big * 2)),
        "too_big_body": ("big.png", b"\x89PNG" + b"0" * (big + 1000)),
        "bad_type": ("notes.txt", b"hello"),
        "not_png": ("drawing.png", b"this is not a png at all, just some text"),
        "empty_file": ("empty.png", b""),
        "audio_on_image_run": ("tone.wav", _wav_bytes()),
    }[case]
    expected = {"too_big_header": 413, "too_big_body": 413, "bad_type": 415, "not_png": 422,
                "empty_file": 400, "audio_on_image_run": 400}[case]
    r = client.post("/search/file", files={"file": files}, data={"k": "3"})
    assert r.status_code == expected, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 5
    if case == "not_png":
        assert "drawing.png" in detail and "polymodal-upload" not in detail
    if case == "bad_type":
        assert ".txt" in detail and ".png" in detail
    if case == "audio_on_image_run":
        assert "audio" in detail
    assert client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("body", [{"text": ""}, {"text": "   "}])
def test_empty_text_queries_are_400(client, body):
    r = client.post("/search", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == "empty text query"


@pytest.mark.parametrize("k", [0, -3, 65])
def test_bad_k_is_422_naming_the_field(client, k):
    r = client.post("/search", json={"text": "cat", "k": k})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == f"k: must be a whole number from 1 to 64 (the index size), got {k}"


def test_bad_k_on_file_search_is_422(client, indexed):
    for k in ("0", "1000"):
        r = client.post("/search/file", files={"file": ("q.png", _png(indexed[0]["image"]))},
                        data={"k": k})
        assert r.status_code == 422 and r.json()["detail"] == (
            f"k: must be a whole number from 1 to 64 (the index size), got {k}")


def test_embed_errors(client):
    assert client.post("/embed", json={"text": " "}).status_code == 400
    assert client.post("/embed", data={}).status_code == 400
    assert client.post("/embed", files={"file": ("a.png", b"garbage")}).status_code == 422
    assert client.post("/embed", files={"file": ("a.exe", b"MZ")}).status_code == 415


@pytest.mark.parametrize("url", [
    "/thumb/no-such-id", "/media/no-such-id",
    "/thumb/../../etc/passwd", "/media/../../etc/passwd",
    "/thumb/..%2F..%2Fetc%2Fpasswd", "/media/..%2F..%2F..%2Fetc%2Fpasswd",
    "/media/%2e%2e/%2e%2e/etc/passwd", "/media//etc/passwd", "/thumb/%2Fetc%2Fpasswd",
])
def test_unknown_ids_and_traversal_are_404(client, url):
    r = client.get(url)
    assert r.status_code == 404
    assert b"root:" not in r.content
    assert client.get("/health").status_code == 200


def test_upload_modality():
    from polymodal.core.errors import UsageError
    from polymodal.serve.app import upload_modality

    assert upload_modality("A.PNG") == ("image", ".png")
    assert upload_modality("x.wav") == ("audio", ".wav")
    assert upload_modality("blob", "image/jpeg")[0] == "image"
    with pytest.raises(UsageError, match="unsupported"):
        upload_modality("x.pdf", "application/pdf")
