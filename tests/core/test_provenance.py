"""Provenance in run.json: package versions, git commit + dirty flag, manifest fingerprint,
encoder ids, command line, start / end time; written by RunFolder.begin / finish."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from polymodal.core import provenance
from polymodal.core.runfolder import RunFolder

pytestmark = pytest.mark.timeout(30)


def test_manifest_fingerprint_hashes_bytes_and_counts_rows(tmp_path):
    jl = tmp_path / "m.jsonl"
    jl.write_text('{"id": "a"}\n\n{"id": "b"}\n{"id": "c"}\n')
    fp = provenance.manifest_fingerprint(jl)
    assert fp["rows"] == 3 and fp["bytes"] == jl.stat().st_size
    assert fp["blake2b"] == hashlib.blake2b(jl.read_bytes(), digest_size=16).hexdigest()
    jl.write_text('{"id": "a"}\n{"id": "B"}\n{"id": "c"}\n')
    assert provenance.manifest_fingerprint(jl)["blake2b"] != fp["blake2b"]
    csv = tmp_path / "m.csv"
    csv.write_text('id,text\n1,"two\nlines"\n2,x\n')  # a quoted newline is one row
    assert provenance.manifest_fingerprint(csv)["rows"] == 2
    assert provenance.manifest_fingerprint(tmp_path / "missing.csv") is None
    assert provenance.manifest_fingerprint(None) is None


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_commit_and_dirty_flag(tmp_path):
    assert provenance.git_info(tmp_path) is None  # not a repository: no error
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.py").write_text("x = 1\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f.py"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), *env, "commit", "-qm", "c"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert provenance.git_info(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "new.txt").write_text("untracked\n")
    assert provenance.git_info(tmp_path)["dirty"] is False
    (tmp_path / "f.py").write_text("x = 2\n")
    assert provenance.git_info(tmp_path) == {"commit": head, "dirty": True}


def test_begin_and_finish_record_provenance_and_keep_run_facts(tmp_path, monkeypatch):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n')
    monkeypatch.setattr(sys, "argv", ["polymodal", "fit", "retrieval", "--epochs", "2"])
    run = RunFolder(tmp_path / "run").begin()
    start = json.loads((run.root / "run.json").read_text())["provenance"]
    assert start["command"] == ["polymodal", "fit", "retrieval", "--epochs", "2"]
    assert {"polymodal", "torch", "numpy"} <= set(start["packages"])
    run.write_config("retrieval", {"manifest": str(manifest)},
                     {"text": {"name": "minilm", "id": "minilm@abc|onnx"}})
    run.update_json("run.json", {"seconds": 1.5})  # what a fit writes keeps the provenance
    RunFolder(run.root).finish()
    info = json.loads((run.root / "run.json").read_text())
    prov = info["provenance"]
    assert info["seconds"] == 1.5 and prov["started"] == start["started"]
    assert prov["finished"] >= prov["started"]
    assert prov["encoders"] == {"text": "minilm@abc|onnx"}
    assert prov["manifest"]["rows"] == 2 and prov["manifest"]["path"] == str(manifest)
    stored = yaml.safe_load((run.root / "config.yaml").read_text())["config"]["manifest"]
    assert stored == str(manifest.resolve())  # outside the run: absolute
    # the code of this checkout: a commit when it is a git work tree, else null
    assert prov["git"] is None or len(prov["git"]["commit"]) == 40
    assert (run.root / "COMPLETE").is_file()
