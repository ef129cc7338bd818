"""Load test of the search server: N concurrent queries against ``polymodal serve``.

Starts ``polymodal serve RUN`` on 127.0.0.1 (a free port, a separate process, access log to a
temp file), waits for ``/health``, sends ``--requests`` search requests at once (asyncio +
httpx; at most ``--concurrency`` in flight; text queries taken from the run's own captions, and
``--image-share`` of them as image uploads of indexed drawings), then stops the server. Prints
errors, client-side p50 / p90 / p99 latency, server-side search time and requests/s. The whole
load phase is bounded by ``--max-seconds``; each request by ``--request-timeout``.

    .venv/bin/python benchmarks/serve_load.py [RUN] [--requests 500] [--concurrency 500]
        [--image-share 0.1] [--k 10] [--max-batch 64] [--json]

Without RUN it uses runs/quickstart, building it first with ``polymodal quickstart`` if missing.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "polymodal.cli.main"]


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                      env.get("PYTHONPATH")]))
    return env


def ensure_run(run: Path | None) -> Path:
    """The run folder to serve; builds runs/quickstart when none is given and it is missing."""
    if run is not None:
        if not (run / "config.yaml").is_file():
            sys.exit(f"{run}: not a run folder (no config.yaml)")
        return run
    run = REPO / "runs" / "quickstart"
    if not (run / "config.yaml").is_file():
        print(f"building {run} with `polymodal quickstart` …", flush=True)
        subprocess.run(CLI + ["quickstart", "-q", "--out", str(run)], check=True, env=_env(),
                       stdout=subprocess.DEVNULL)
    return run


def queries_of(run: Path, n: int) -> tuple[list[str], list[Path]]:
    """Distinct captions and image files from the run's manifest (cycled to ``n``)."""
    import yaml

    manifest = Path(yaml.safe_load((run / "config.yaml").read_text())["config"]["manifest"])
    texts, images = [], []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        t = r.get("text")
        texts += t if isinstance(t, list) else [t] if t else []
        if r.get("image"):
            images.append((manifest.parent / r["image"]).resolve())
    texts = list(dict.fromkeys(x for x in texts if x and x.strip())) or ["a red apple"]
    return [texts[i % len(texts)] for i in range(n)], images


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int, log: Path, wait_s: float = 180,
                 max_batch: int = 64) -> subprocess.Popen:
    """``polymodal serve`` in a child process; returns once /health answers."""
    import httpx

    proc = subprocess.Popen(CLI + ["serve", str(run), "--host", "127.0.0.1", "--port",
                                   str(port), "--max-batch", str(max_batch)], env=_env(),
                            stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    t0 = time.time()
    while time.time() - t0 < wait_s:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}; log: {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                print(f"server ready in {time.time() - t0:.1f} s (pid {proc.pid}, port {port})")
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.terminate()
    sys.exit(f"server not ready after {wait_s:.0f} s; log: {log}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


async def load(base: str, texts: list[str], images: list[Path], args) -> dict:
    import httpx

    n_img = int(round(len(texts) * args.image_share)) if images else 0
    jobs = [("image", images[i % len(images)]) for i in range(n_img)] + \
           [("text", t) for t in texts[n_img:]]
    sem = asyncio.Semaphore(args.concurrency)
    lat, server_ms, search_ms, errors, batches = [], [], [], {}, []
    limits = httpx.Limits(max_connections=args.concurrency,
                          max_keepalive_connections=args.concurrency)

    async def one(client, kind, item):
        async with sem:
            t0 = time.perf_counter()
            try:
                if kind == "text":
                    r = await client.post("/search", json={"text": item, "k": args.k})
                else:
                    r = await client.post("/search/file", data={"k": str(args.k)},
                                          files={"file": (item.name, item.read_bytes())})
                if r.status_code != 200:
                    key = f"HTTP {r.status_code}: {r.text[:120]}"
                else:
                    body = r.json()
                    key = None if len(body["hits"]) == args.k else "wrong number of hits"
                    server_ms.append(body["latency_ms"])
                    search_ms.append(body["search_ms"])
                    if kind == "text":
                        batches.append(body.get("batch", 1))
            except Exception as e:  # timeouts, refused connections: counted, not raised
                key = f"{type(e).__name__}: {str(e)[:120]}"
            if key:
                errors[key] = errors.get(key, 0) + 1
            else:
                lat.append(time.perf_counter() - t0)

    async with httpx.AsyncClient(base_url=base, limits=limits,
                                 timeout=args.request_timeout) as client:
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(one(client, k, it)) for k, it in jobs]
        done, pending = await asyncio.wait(tasks, timeout=args.max_seconds)
        for t in pending:
            t.cancel()
        wall = time.perf_counter() - t0
    if pending:
        errors[f"not finished within {args.max_seconds} s"] = len(pending)
    return {"requests": len(jobs), "image_uploads": n_img, "ok": len(lat),
            "errors": sum(errors.values()), "error_kinds": errors, "wall_s": round(wall, 2),
            "requests_per_s": round(len(lat) / wall, 1) if wall else 0.0,
            **_percentiles("latency_ms", [x * 1000 for x in lat]),
            **_percentiles("server_ms", server_ms), **_percentiles("search_ms", search_ms),
            "text_batch_mean": round(statistics.mean(batches), 1) if batches else None,
            "text_batch_max": max(batches) if batches else None}


def _percentiles(name: str, xs: list[float]) -> dict:
    if not xs:
        return {}
    xs = sorted(xs)
    q = lambda p: xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]  # noqa: E731
    return {f"{name}_p50": round(q(50), 1), f"{name}_p90": round(q(90), 1),
            f"{name}_p99": round(q(99), 1), f"{name}_mean": round(statistics.mean(xs), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", nargs="?", type=Path, help="run folder (default: runs/quickstart)")
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=500, help="most requests in flight")
    ap.add_argument("--image-share", type=float, default=0.1,
                    help="share of requests that upload an indexed image")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=300, help="bound on the load phase")
    ap.add_argument("--request-timeout", type=float, default=120)
    ap.add_argument("--max-batch", type=int, default=64,
                    help="server's most searches per encoding batch (1: no batching)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    if not (0 < args.requests <= 100_000 and 0 < args.concurrency and 0 <= args.image_share <= 1):
        ap.error("--requests in 1..100000, --concurrency > 0, --image-share in 0..1")
    run = ensure_run(args.run)
    texts, images = queries_of(run, args.requests)
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"polymodal-serve-load-{port}.log"
    proc = start_server(run, port, log, max_batch=args.max_batch)
    try:
        res = asyncio.run(load(f"http://127.0.0.1:{port}", texts, images, args))
        res["server_alive_after"] = proc.poll() is None
    finally:
        stop_server(proc)
    res.update(run=str(run), concurrency=args.concurrency, k=args.k, cpus=os.cpu_count(),
               max_batch=args.max_batch)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"run {run}: {res['requests']} requests ({res['image_uploads']} image uploads), "
              f"at most {args.concurrency} in flight, k={args.k}, {res['cpus']} CPUs, "
              f"server --max-batch {args.max_batch}")
        print(f"ok {res['ok']}  errors {res['errors']}  wall {res['wall_s']} s  "
              f"throughput {res['requests_per_s']} req/s")
        for kind, n in res["error_kinds"].items():
            print(f"  error x{n}: {kind}")
        if res["ok"]:
            print(f"client latency ms: p50 {res['latency_ms_p50']}  p90 {res['latency_ms_p90']}  "
                  f"p99 {res['latency_ms_p99']}  mean {res['latency_ms_mean']}")
            print(f"server time ms (queue included): p50 {res['server_ms_p50']}  "
                  f"p99 {res['server_ms_p99']}")
            print(f"search alone ms (encode + index, per batch): p50 {res['search_ms_p50']}  "
                  f"p99 {res['search_ms_p99']}  mean {res['search_ms_mean']}")
            print(f"text queries per encoding batch: mean {res['text_batch_mean']}  "
                  f"max {res['text_batch_max']}")
        print(f"server alive after the load: {res['server_alive_after']}; log: {log}")
    return 0 if res["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
