"""Hostile clients against `polymodal serve` (issue 11): a real server in its own process on a
loopback port, over raw sockets and httpx, on the small real retrieval run (tests/serve).

Bodies past the limit (chunked included) are cut while they stream, with the server's memory
watched through /proc; symlinks out of the data folder and traversal are 404; foreign Host
headers 400; a bad query fails alone; bad ``k`` values and long texts are 422 naming the field;
500 bodies carry a request id only.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytestmark = pytest.mark.timeout(90)

UPLOAD_MB = 1
SECRET = "root:x:0:0:SECRET-NOT-TO-BE-SERVED"
JSON_LIMIT_MSG = "request body larger than the 1 MB limit of a JSON request"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


@pytest.fixture(scope="module")
def hostile_run(serve_testdata, tmp_path_factory) -> dict:
    """A copy of the small run whose manifest points at copies of its images, three of them
    replaced by symlinks: to a secret file, to an image outside the data folder, and to another
    image inside it."""
    base = serve_testdata.ensure_small_run(tmp_path_factory.getbasetemp())
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(base, root / "run")
    config = root / "run" / "config.yaml"
    old_manifest = re.search(r"manifest: (\S+)", config.read_text()).group(1)
    rows = [json.loads(line) for line in Path(old_manifest).read_text().splitlines()]
    images = root / "data" / "images"
    images.mkdir(parents=True)
    (root / "secret").mkdir()
    secret = root / "secret" / "passwd"
    secret.write_text(SECRET)
    originals = {}
    for i, r in enumerate(rows):
        originals[r["id"]] = Path(r["image"])
        r["image"] = str(images / f"{i:03d}.png")
        if i > 2:
            shutil.copy(originals[r["id"]], r["image"])
    os.symlink(secret, rows[0]["image"])                   # out of the data folder: a secret
    os.symlink(originals[rows[1]["id"]], rows[1]["image"])  # out of it: a real image
    os.symlink(rows[3]["image"], rows[2]["image"])          # inside it: served
    manifest = root / "data" / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config.write_text(config.read_text().replace(old_manifest, str(manifest)))
    return {"run": root / "run", "rows": rows, "secret": secret}


@pytest.fixture(scope="module")
def server(hostile_run, tmp_path_factory):
    """``polymodal serve`` in a child process (so its memory can be read); yields
    ``(base_url, port, pid)``."""
    port = _free_port()
    log = tmp_path_factory.mktemp("serverlog") / "server.log"
    cmd = [sys.executable, "-m", "polymodal", "serve", str(hostile_run["run"]), "--host",
           "127.0.0.1", "--port", str(port), "--max-upload-mb", str(UPLOAD_MB),
           "--allow-host", "example.test"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() - t0 > 60:
            proc.kill()
            pytest.fail(f"server did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    httpx.post(f"{url}/search", json={"text": "warm up", "k": 3}, timeout=30)
    yield url, port, proc.pid
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _stream(port: int, pid: int, head: str, chunks, length: int | None = None,
            limit_bytes: int = 50 * 2**20):
    """POST over a raw socket -- ``Transfer-Encoding: chunked``, or ``Content-Length: length``
    -- stopping as soon as the server answers; returns ``(status, detail, bytes_sent,
    rss_growth_mb)``, the growth being the largest VmRSS sampled while sending minus the one
    before."""
    base = peak = _rss_mb(pid)
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    s.sendall(f"{head}{framing}\r\n\r\n".encode())
    sent = 0
    try:
        for n, chunk in enumerate(chunks):
            if select.select([s], [], [], 0)[0] or sent >= limit_bytes:
                break
            s.sendall(chunk if length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            if n % 8 == 0:
                peak = max(peak, _rss_mb(pid))
        else:
            if length is None:
                s.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    data, t0 = b"", time.time()
    s.settimeout(0.2)
    while time.time() - t0 < 20:  # read the answer, watching the server's memory meanwhile
        peak = max(peak, _rss_mb(pid))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    s.close()
    if not data:
        return None, f"no answer after {sent / 2**20:.1f} MB sent", sent, peak - base
    status = int(data.split(b" ", 2)[1])
    detail = json.loads(data.split(b"\r\n\r\n", 1)[1])["detail"]
    return status, detail, sent, peak - base


def test_chunked_oversize_json_is_413_while_streaming(server):
    url, port, pid = server
    head = (f"POST /search HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\n")
    chunks = (b'{"text": "' if i == 0 else b"a" * 65536 for i in range(10**6))
    status, detail, sent, growth = _stream(port, pid, head, chunks)
    print(f"\nchunked JSON: {status} after {sent / 2**20:.2f} MB sent, RSS +{growth:.1f} MB")
    assert status == 413, (detail, f"RSS +{growth:.0f} MB")
    assert re.fullmatch(re.escape(JSON_LIMIT_MSG) + r" \(stopped reading at 1\.\d MB\)", detail)
    assert sent < 20 * 2**20, "the body was not cut while streaming"
    assert growth < 50
    assert httpx.get(f"{url}/health").status_code == 200


def test_chunked_oversize_multipart_is_413_while_streaming(server):
    url, port, pid = server
    boundary = "polymodalboundary"
    head = (f"POST /search/file HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n")
    first = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
             f"filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG").encode()
    chunks = (first if i == 0 else b"\0" * 65536 for i in range(10**6))
    status, detail, sent, growth = _stream(port, pid, head, chunks)
    print(f"\nchunked multipart: {status} after {sent / 2**20:.2f} MB sent, RSS +{growth:.1f} MB")
    assert status == 413, (detail, f"RSS +{growth:.0f} MB")
    assert re.fullmatch(r"upload larger than 1 MB \(stopped reading at 1\.\d MB\)", detail)
    assert sent < 20 * 2**20 and growth < 50


def test_declared_oversize_is_413_before_the_body(server):
    """A Content-Length over the limit is answered before one byte of the body is sent."""
    _, port, _ = server
    for path, ctype, msg in (("/search/file", "multipart/form-data; boundary=x",
                              "upload larger than 1 MB (50.0 MB declared)"),
                             ("/search", "application/json",
                              f"{JSON_LIMIT_MSG} (2.0 MB declared)")):
        size = 50 * 2**20 if path == "/search/file" else 2 * 2**20
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {ctype}\r\n"
                      f"Content-Length: {size}\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 413 ")
        assert b"connection: close" in data.lower()
        assert json.loads(data.split(b"\r\n\r\n", 1)[1])["detail"] == msg


def test_json_and_upload_routes_have_their_own_limits(server):
    url, port, pid = server
    body = b'{"text": "' + b"a" * (2**20) + b'"}'
    head = "POST /search HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    status, detail, _, _ = _stream(port, pid, head, [body], length=len(body))
    assert status == 413 and detail == f"{JSON_LIMIT_MSG} (1.0 MB declared)"
    junk = b"\x89PNG" + b"\0" * (900 * 1024)  # 0.9 MB: over the JSON limit, under the upload's
    r = httpx.post(f"{url}/search/file", files={"file": ("junk.png", junk)}, data={"k": "3"})
    assert r.status_code == 422 and "junk.png" in r.json()["detail"]


def test_symlink_out_of_the_data_folder_is_404(server, hostile_run):
    url, _, _ = server
    rows = hostile_run["rows"]
    for row in rows[:2]:  # a secret, and a real image outside the data folder
        for kind in ("media", "thumb"):
            r = httpx.get(f"{url}/{kind}/{row['id']}")
            assert r.status_code == 404 and r.json() == {"detail": "not found"}
            assert SECRET.encode() not in r.content
    r = httpx.get(f"{url}/media/{rows[2]['id']}")  # a link inside the data folder is served
    assert r.status_code == 200 and r.content == Path(rows[3]["image"]).read_bytes()
    r = httpx.get(f"{url}/media/{rows[5]['id']}")
    assert r.status_code == 200 and r.content == Path(rows[5]["image"]).read_bytes()
    assert httpx.get(f"{url}/thumb/{rows[5]['id']}").headers["content-type"] == "image/png"


def test_path_traversal_is_404(server, hostile_run):
    _, port, _ = server
    secret = hostile_run["secret"]
    for target in ("/media/../../../../etc/passwd", "/media/..%2f..%2fsecret%2fpasswd",
                   "/media/%2e%2e/%2e%2e/secret/passwd", "/thumb/../../secret/passwd",
                   f"/media/{secret}", f"/media//{secret}", "/media/../secret/passwd",
                   "/media/images/../../secret/passwd"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                      .encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 404 "), (target, data[:200])
        assert SECRET.encode() not in data and b"root:" not in data


@pytest.mark.parametrize("host,status", [
    ("evil.example", 400), ("localhost.evil.example", 400), ("127.0.0.1.nip.io", 400),
    ("192.168.1.10:{port}", 400), ("localhost:{port}", 200), ("127.0.0.1:{port}", 200),
    ("[::1]:{port}", 200), ("LOCALHOST", 200), ("example.test", 200), ("example.test.:80", 200),
])
def test_host_allow_list(server, host, status):
    url, port, _ = server
    host = host.format(port=port)
    r = httpx.get(f"{url}/health", headers={"Host": host})
    assert r.status_code == status, r.text
    if status == 400:
        name = host.split(":")[0]
        assert r.json()["detail"] == (f"host not allowed: '{name}' (start `polymodal serve` "
                                      "with --allow-host NAME)")
        assert httpx.post(f"{url}/search", json={"text": "cat"},
                          headers={"Host": host}).status_code == 400


def test_a_bad_query_among_20_concurrent_fails_alone(server):
    url, _, _ = server
    texts = [f"a drawing of {w}" for w in ("a cat", "a dog", "a bird", "a tree", "a car",
                                           "a house", "the sun", "a fish", "a flower", "a boat",
                                           "a guitar", "an apple", "a star", "a horse", "a cup",
                                           "a book", "a chair", "a key", "a hat")]
    expected = {t: [h["row_id"] for h in httpx.post(f"{url}/search", json={"text": t, "k": 5})
                    .json()["hits"]] for t in texts}
    bad = b'{"text": "a \\ud800 cat", "k": 5}'

    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            calls = [c.post("/search", json={"text": t, "k": 5}) for t in texts]
            calls.insert(7, c.post("/search", content=bad,
                                   headers={"content-type": "application/json"}))
            return await asyncio.gather(*calls)

    responses = asyncio.run(main())
    failed = responses.pop(7)
    assert failed.status_code == 422
    assert failed.json()["detail"] == ("text is not valid Unicode: lone surrogate U+D800 at "
                                       "character 3")
    assert [r.status_code for r in responses] == [200] * 19
    for t, r in zip(texts, responses):
        assert [h["row_id"] for h in r.json()["hits"]] == expected[t]


def test_500_concurrent_searches_without_errors(server):
    url, _, _ = server
    words = ["cat", "dog", "bird", "tree", "car", "house", "sun", "fish", "flower", "boat"]
    queries = [f"a {words[i % 10]} number {i}" for i in range(500)]

    async def main():
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
            return await asyncio.gather(*(c.post("/search", json={"text": q, "k": 3})
                                          for q in queries), return_exceptions=True)

    t0 = time.perf_counter()
    responses = asyncio.run(main())
    wall = time.perf_counter() - t0
    errors = [r for r in responses if isinstance(r, Exception) or r.status_code != 200]
    batches = [r.json()["batch"] for r in responses if r not in errors]
    print(f"\n500 concurrent searches: {len(errors)} errors, {wall:.1f} s wall, "
          f"largest batch {max(batches, default=0)}")
    assert errors == []
    assert all(len(r.json()["hits"]) == 3 for r in responses)


@pytest.mark.parametrize("k,shown", [
    ("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"), ("1e400", "inf"), ("-1", "-1"),
    ("0", "0"), ("65", "65"), ("1e20", "1e+20"), ("2.5", "2.5"), ('"x"', "x"), ("true", "True"),
    ("1" + "0" * 30, "1" + "0" * 26 + "…"),
])
def test_bad_k_is_422_naming_the_field(server, k, shown):
    url, _, _ = server
    r = httpx.post(f"{url}/search", content=f'{{"text": "a cat", "k": {k}}}',
                   headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == ("k: must be a whole number from 1 to 64 (the index size), "
                                  f"got {shown}")


def test_bad_form_k_on_file_search_is_422(server, hostile_run):
    url, _, _ = server
    png = Path(hostile_run["rows"][5]["image"]).read_bytes()
    for k in ("nan", "-1", "1e400", "999999999999999999999"):
        r = httpx.post(f"{url}/search/file", files={"file": ("q.png", png)}, data={"k": k})
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith("k: must be a whole number from 1 to 64 (the index "
                                             "size), got ")


def test_query_length_limit(server):
    from polymodal.data.limits import MAX_QUERY_CHARS

    url, port, pid = server
    r = httpx.post(f"{url}/search", json={"text": "x" * (MAX_QUERY_CHARS + 1), "k": 3})
    assert r.status_code == 422
    assert r.json()["detail"] == (f"text too long ({MAX_QUERY_CHARS + 1:,} characters > limit "
                                  f"of {MAX_QUERY_CHARS:,})")
    r = httpx.post(f"{url}/embed", data={"text": "x" * (MAX_QUERY_CHARS + 1)})
    assert r.status_code == 422 and "characters > limit of" in r.json()["detail"]
    body = json.dumps({"text": "a cat " * 1_500_000, "k": 3}).encode()  # the review's 9 MB query
    head = "POST /search HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    parts = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    status, detail, _, _ = _stream(port, pid, head, parts, length=len(body))
    assert status == 413 and detail == f"{JSON_LIMIT_MSG} (8.6 MB declared)"  # never reaches the model
    r = httpx.post(f"{url}/search", json={"text": "cat " * (MAX_QUERY_CHARS // 4), "k": 3})
    assert r.status_code == 200 and len(r.json()["hits"]) == 3


@pytest.fixture(scope="module")
def app_any_host(hostile_run):
    """The same run in-process, every Host allowed (``--allow-host '*'``)."""
    from polymodal.serve.app import create_app

    return create_app(hostile_run["run"], max_upload_mb=UPLOAD_MB, allow_hosts=["*"])


def test_500_body_has_a_request_id_and_no_internals(app_any_host, monkeypatch, caplog):
    from fastapi.testclient import TestClient

    def boom(*args, **kwargs):
        raise RuntimeError("secret detail /home/operator/.ssh/id_rsa")

    monkeypatch.setattr(app_any_host.state.batcher.model, "search", boom)
    with TestClient(app_any_host, raise_server_exceptions=False,
                    base_url="http://any.example") as c:
        with caplog.at_level(logging.ERROR, logger="polymodal.serve"):
            r = c.post("/search", json={"text": "a cat", "k": 3})
    assert r.status_code == 500
    rid = r.json()["request_id"]
    assert re.fullmatch(r"[0-9a-f]{12}", rid) and r.headers["x-request-id"] == rid
    assert r.json() == {"detail": f"internal error (request id {rid}; the details are in the "
                                  "server log)", "request_id": rid}
    for leak in ("secret", "RuntimeError", "Traceback", "id_rsa", ".py"):
        assert leak not in r.text
    logged = [rec for rec in caplog.records if rid in rec.getMessage()]
    assert logged and "RuntimeError: secret detail" in logged[0].getMessage()
    assert logged[0].exc_info is not None


def test_batcher_isolates_a_query_the_encoder_rejects(app_any_host):
    """19 good texts and one the tokenizer raises on (a lone surrogate, queued without the
    checks of `submit`) in one batch: the 19 get their own hits, the bad one its error."""
    from polymodal.core.errors import UsageError
    from polymodal.serve.batching import Pending, SearchBatcher

    b = SearchBatcher(app_any_host.state.batcher.model)
    texts = [f"a drawing number {i}" for i in range(19)]
    singles = {t: [h.row_id for h in b.model.search(t, 4)] for t in texts}
    items = [b.submit(t, 4) for t in texts]
    bad = Pending("a \ud800 cat", 4)
    b.queues["text"].insert(5, bad)
    got = [b.result(i) for i in items]
    assert [[h.row_id for h in g.hits] for g in got] == [singles[t] for t in texts]
    with pytest.raises(TypeError):
        b.result(bad)
    assert b.pending == []
    with pytest.raises(UsageError, match=r"^text query: text is not valid Unicode: lone "
                                         r"surrogate U\+D800 at character 3$"):
        b.submit("a \ud800 cat", 4)


def test_any_host_with_star_and_bad_allow_host_names(app_any_host, hostile_run, capsys):
    from fastapi.testclient import TestClient

    from polymodal.cli.main import main

    with TestClient(app_any_host, base_url="http://rebound.example") as c:
        assert c.get("/health").status_code == 200
    for bad in ("a b", "evil.example/path", ""):
        assert main(["serve", str(hostile_run["run"]), "--allow-host", bad]) == 2
        assert capsys.readouterr().err.strip() == (f"error: --allow-host {bad!r}: give a host "
                                                   "name or address (or '*')")
