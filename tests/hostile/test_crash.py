"""kill -9 during `polymodal encode` (issue 11): the real CLI with the offline MiniLM text encoder
on real rows of the bundled OpenClipart sample (the first 240: 314 captions, 310 distinct),
killed while it encodes and while it writes its output folder; a re-run then gives exactly the
vectors of a clean run, reuses the checkpointed work and never shows a half-written folder.

Every encoder batch is a checkpoint, so a kill loses at most the batch in flight: with batches of
16 and the kill after >= 176 finished items (11 batches) at least 90 % of them are kept whatever
the moment of the kill. A resumed run encodes the same batches as a clean run (what is left is
a suffix of the same length-sorted order), which is why its vectors are bit-identical (MiniLM's
float16 vectors depend, in the last bit, on what else is in the padded batch).

The killed runs go through a small driver (`DRIVER`) that wraps one function to report progress
(finished items, or "inside the output write") so the kill lands deterministically; clean runs
and re-runs are plain ``.venv/bin/polymodal encode``.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from polymodal.data.datasets import sample_path
from polymodal.features.cache.features import FeatureSet

pytestmark = pytest.mark.timeout(240)
REPO = Path(__file__).resolve().parents[2]
POLYMODAL = REPO / ".venv" / "bin" / "polymodal"
ROWS, CELLS, DISTINCT = 240, 314, 310
BATCH = 16  # one checkpoint per encoder batch
KILL_AT = 176  # kill once this many distinct texts are finished (11 batches)

DRIVER = r'''
import os, sys, time
from pathlib import Path
mode, signal_file = os.environ["CRASH_MODE"], Path(os.environ["CRASH_SIGNAL"])
if mode == "encode":  # report finished items after every encoder batch
    from polymodal.features.encoders.text import MiniLMEncoder
    encode_prepared, done = MiniLMEncoder.encode_prepared, [0]

    def counted(self, batch):
        time.sleep(0.02)  # a slower encoder: the kill lands while a batch is being encoded
        out = encode_prepared(self, batch)
        done[0] += len(batch)
        with open(signal_file, "a") as fh:
            fh.write(f"{done[0]}\n")
        return out

    MiniLMEncoder.encode_prepared = counted
else:  # "write": stop inside the output write, once the first matrix file exists
    import numpy as np
    open_memmap = np.lib.format.open_memmap

    def stuck(*a, **k):
        mat = open_memmap(*a, **k)
        signal_file.write_text("writing\n")
        time.sleep(600)
        return mat

    np.lib.format.open_memmap = stuck
from polymodal.cli.main import main
sys.exit(main(sys.argv[1:]))
'''


def texts_manifest(folder: Path) -> Path:
    """The sample's id + text (captions) columns: a text-only manifest of real rows."""
    rows = [json.loads(x) for x in sample_path("openclipart").read_text().splitlines()][:ROWS]
    man = folder / "texts.jsonl"
    man.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows))
    return man


def encode_args(man: Path, out: Path, cache: Path) -> list[str]:
    return ["encode", str(man), "--out", str(out), "--cache", str(cache), "-q",
            "--encoder", "text=minilm", "--batch-size", str(BATCH)]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_cli(man: Path, out: Path, cache: Path) -> dict:
    """A plain `polymodal encode`; returns its summary row for text."""
    res = subprocess.run([str(POLYMODAL), *encode_args(man, out, cache)], env=env(), cwd=REPO,
                         capture_output=True, text=True, timeout=200)
    assert res.returncode == 0, res.stderr[-2000:]
    row = next(line.split() for line in res.stdout.splitlines() if line.startswith("text "))
    return {"items": int(row[2]), "cached": int(row[3]), "encoded": int(row[4]),
            "stdout": res.stdout}


def run_killed(tmp: Path, mode: str, man: Path, out: Path, cache: Path, ready) -> str:
    """Run the driver, SIGKILL it as soon as ``ready(signal text)``; returns the signal text
    as the process left it."""
    driver, sig = tmp / "driver.py", tmp / f"signal-{mode}"
    driver.write_text(DRIVER)
    proc = subprocess.Popen([sys.executable, str(driver), *encode_args(man, out, cache)],
                            env={**env(), "CRASH_MODE": mode, "CRASH_SIGNAL": str(sig)},
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 200
        while not (sig.exists() and ready(sig.read_text())):
            assert proc.poll() is None, f"driver ended early: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "driver never reached the kill point"
            time.sleep(0.005)
        time.sleep(random.uniform(0, 0.05))  # not in step with the driver's report
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    return sig.read_text()


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The reference: one uninterrupted run into a fresh cache."""
    tmp = tmp_path_factory.mktemp("crash-clean")
    man = texts_manifest(tmp)
    summary = run_cli(man, tmp / "out", tmp / "cache")
    assert (summary["items"], summary["cached"], summary["encoded"]) == (CELLS, 0, DISTINCT)
    return man, np.asarray(FeatureSet.load(tmp / "out").vectors("text")[0])


def test_kill_during_encode_then_rerun_resumes_with_identical_vectors(clean, tmp_path):
    man, ref = clean
    out, cache = tmp_path / "out", tmp_path / "cache"
    left = run_killed(tmp_path, "encode", man, out, cache,
                      lambda s: s.endswith("\n") and int(s.split()[-1]) >= KILL_AT)
    finished = int(left.split()[-1])
    assert KILL_AT <= finished < DISTINCT
    assert not out.exists()  # nothing half-written visible: only a hidden staging folder
    summary = run_cli(man, out, cache)
    reused = DISTINCT - summary["encoded"]  # distinct texts taken from the cache
    print(f"crash during encode: {finished} of {DISTINCT} items finished before the kill, "
          f"{reused} reused by the re-run ({summary['cached']} of {CELLS} cells cached), "
          f"{summary['encoded']} encoded again")
    assert summary["cached"] >= reused >= 0.9 * finished
    np.testing.assert_array_equal(np.asarray(FeatureSet.load(out).vectors("text")[0]), ref)
    assert hidden(tmp_path) == []  # the killed run's staging folder was cleaned up


@pytest.mark.slow
def test_kill_during_output_write_leaves_the_old_folder_and_rerun_is_identical(clean,
                                                                               tmp_path):
    man, ref = clean
    out, cache = tmp_path / "out", tmp_path / "cache"
    old_man = tmp_path / "old.jsonl"  # an earlier, different encode into the same --out
    old_man.write_text("".join(man.read_text().splitlines(keepends=True)[:50]))
    run_cli(old_man, out, tmp_path / "old-cache")  # (its own cache: same batches as clean)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    run_killed(tmp_path, "write", man, out, cache, lambda s: s == "writing\n")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old folder intact
    assert len(FeatureSet.load(out).ids) == 50
    assert any(".partial-" in h for h in hidden(tmp_path))  # the half-written one: hidden
    summary = run_cli(man, out, cache)
    print(f"crash during output write: re-run reused {summary['cached']} of {CELLS} cells")
    assert (summary["cached"], summary["encoded"]) == (CELLS, 0)  # all checkpointed before
    np.testing.assert_array_equal(np.asarray(FeatureSet.load(out).vectors("text")[0]), ref)
    assert hidden(tmp_path) == []
