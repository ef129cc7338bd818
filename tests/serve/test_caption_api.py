"""``POST /caption`` on a tiny real caption run (GRU decoder trained for a few epochs on the 64
drawings of the small retrieval run, reusing its encoded features), and its errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
caption_task = pytest.importorskip("polymodal.tasks.caption")


@pytest.fixture(scope="module")
def caption_run(small_caption_run) -> Path:
    return small_caption_run


@pytest.fixture(scope="module")
def client(caption_run):
    from fastapi.testclient import TestClient

    from polymodal.serve.app import create_app

    with TestClient(create_app(caption_run, max_upload_mb=0.5), base_url="http://localhost") as c:
        yield c


@pytest.fixture(scope="module")
def images(small_run) -> list[Path]:
    from polymodal.tasks.retrieval.predict import load_run

    manifest = load_run(small_run).config.manifest
    return [Path(json.loads(line)["image"]) for line in Path(manifest).read_text().splitlines()]


def test_caption_matches_the_library_and_health_says_caption(client, caption_run, images):
    h = client.get("/health").json()
    assert h["task"] == "caption" and h["endpoints"] == ["/caption"]
    assert "/caption" in client.get("/openapi.json").json()["paths"]
    loaded = caption_task.load_captioner(caption_run)
    for img in images[:2]:
        for beam in (1, 2):
            r = client.post("/caption", files={"file": (img.name, img.read_bytes())},
                            data={"beam": str(beam)})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["beam"] == beam and body["latency_ms"] > 0
            assert body["caption"] == caption_task.caption_images(loaded, [img], beam=beam)[0]
            vocab = set(json.loads((caption_run / "vocab.json").read_text()))
            assert set(body["caption"].split()) <= vocab


@pytest.mark.parametrize("files,data,status,word", [
    ({"file": ("tone.wav", b"RIFF....WAVE")}, {}, 415, "image"),
    ({"file": ("x.png", b"not an image")}, {}, 422, "x.png"),
    ({"file": ("x.pdf", b"%PDF")}, {}, 415, ".pdf"),
    (None, {}, 422, "file"),
    ("ok", {"beam": "0"}, 400, "beam"),
    ("ok", {"beam": "99"}, 400, "beam"),
])
def test_caption_errors(client, images, files, data, status, word):
    if files == "ok":
        files = {"file": (images[0].name, images[0].read_bytes())}
    r = client.post("/caption", files=files, data=data)
    assert r.status_code == status, r.text
    assert word in json.dumps(r.json()["detail"])
    assert client.post("/search", json={"text": "a cat"}).status_code == 400
    assert client.get("/health").json()["status"] == "ok"
