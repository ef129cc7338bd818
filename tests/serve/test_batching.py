"""Concurrent searches share one encoding (micro-batching) and get exactly the answers of
single searches, on the small real retrieval run; one bad file fails only its own request."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

QUERIES = ["a red apple", "a cat", "a guitar", "the flag of a country", "a mobile phone",
           "a blue bird", "a car", "a house"]


@pytest.fixture(scope="module")
def singles(small_run) -> dict[tuple[str, int], list]:
    from polymodal.tasks.retrieval.predict import load_run, search_run

    run = load_run(small_run)
    return {(q, k): search_run(run, text=q, k=k) for q, k in zip(QUERIES, [3, 10] * 4)}


def test_batcher_matches_single_searches(small_run, singles):
    from polymodal.serve.batching import SearchBatcher
    from polymodal.tasks.retrieval.predict import load_run

    b = SearchBatcher(load_run(small_run))
    items = [b.submit(q, k) for q, k in singles]
    first = b.result(items[0])  # answers the whole queue in one batch
    assert all(i.done and i.batch == len(items) for i in items) and first.search_ms > 0
    for item, expected in zip(items, singles.values()):
        assert [h.row_id for h in item.hits] == [h.row_id for h in expected]
        assert [h.score for h in item.hits] == pytest.approx([h.score for h in expected],
                                                             abs=1e-4)
        assert item.hits[0].path == expected[0].path and item.hits[0].text == expected[0].text
    assert b.pending == []


def test_batcher_max_batch_and_errors(small_run):
    from polymodal.core.errors import UsageError
    from polymodal.serve.batching import SearchBatcher
    from polymodal.tasks.retrieval.predict import load_run

    b = SearchBatcher(load_run(small_run), max_batch=3)
    items = [b.submit(q, 5) for q in QUERIES[:7]]
    b.result(items[-1])  # three batches: 3 + 3 + 1
    assert [i.batch for i in items] == [3, 3, 3, 3, 3, 3, 1]
    for text, k in (("  ", 3), ("cat", 0), ("cat", 65)):
        with pytest.raises(UsageError):
            b.submit(text, k)


def test_concurrent_requests_are_batched_through_the_app(small_run, singles):
    """Hold the model lock while 8 requests arrive; the first to get it answers all 8."""
    from polymodal.serve.app import create_app

    app = create_app(small_run)

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            app.state.guard.lock.acquire()
            tasks = [asyncio.create_task(client.post("/search", json={"text": q, "k": k}))
                     for q, k in singles]
            t0 = time.time()
            while len(app.state.batcher.pending) < len(tasks) and time.time() - t0 < 30:
                await asyncio.sleep(0.01)
            threading.Timer(0.05, app.state.guard.lock.release).start()
            return await asyncio.gather(*tasks)

    responses = asyncio.run(main())
    for r, expected in zip(responses, singles.values()):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["batch"] == len(singles)
        assert [h["row_id"] for h in body["hits"]] == [h.row_id for h in expected]


def test_image_batch_with_one_bad_file(small_run, tmp_path):
    from polymodal.core.errors import PolymodalError
    from polymodal.serve.batching import SearchBatcher
    from polymodal.tasks.retrieval.predict import load_run, search_run

    run = load_run(small_run)
    good = [str(r.image) for r in run.manifest.records[:2]]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    b = SearchBatcher(run)
    items = [b.submit(p, 4, "image") for p in (good[0], str(bad), good[1])]
    b.submit("a cat", 3)  # another modality's queue is left alone
    for item, path in zip(items, (good[0], None, good[1])):
        if path is None:
            with pytest.raises(PolymodalError, match="bad.png"):
                b.result(item)
            continue
        got = b.result(item)
        assert [h.row_id for h in got.hits] == [h.row_id for h in search_run(run, image=path,
                                                                               k=4)]
    assert len(b.pending) == 1 and b.pending[0].modality == "text"
