"""Only regular files are opened: a FIFO, a device or a symlink to one is reported as a bad row
by `encode` (never hashed, never read) and the job goes on. A FIFO would block a reader forever,
so the test runs under a timeout."""
from __future__ import annotations

import json
import os

import pytest

from polymodal.cli.main import main
from polymodal.data.datasets import sample_path


@pytest.mark.timeout(120)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_encode_skips_fifos_and_devices_without_blocking(tmp_path, capsys):
    src = sample_path("openclipart")
    rows = [json.loads(x) for x in src.read_text().splitlines()][:4]
    for r in rows:
        r["image"] = str((src.parent / r["image"]).resolve())
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    rows[1]["image"], rows[2]["image"] = str(fifo), str(tmp_path / "zero.png")
    man = tmp_path / "m.jsonl"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["encode", str(man), "--out", str(tmp_path / "f"), "-q",
                 "--encoder", "image=efficientnet-lite0"]) == 0
    out = capsys.readouterr().out
    assert "skipped: 2" in out
    skipped = [json.loads(x) for x in (tmp_path / "f" / "skipped.jsonl").read_text().splitlines()]
    assert sorted(s["row"] for s in skipped) == [2, 3]
    assert all("not a regular file" in s["reason"] for s in skipped), skipped
    meta = json.loads((tmp_path / "f" / "features.json").read_text())
    assert meta["modalities"]["image"]["count"] == 2
