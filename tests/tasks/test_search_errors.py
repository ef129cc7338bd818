"""`polymodal search` on bad input: a missing or corrupt run folder, a query that does not
decode, an empty query, k out of range. Each is one line ``error: …`` on stderr and exit code 2.

The run is fitted (linear CCA, no training loop) on the bundled OpenClipart sample manifest with
a pre-encoded feature folder of random vectors (``RetrievalConfig.features``), so the module
costs a few seconds: only the queries that reach the model load the real text encoder.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tasks_testdata import write_features

from polymodal.cli.main import main
from polymodal.data.datasets import sample_path
from polymodal.core.errors import UsageError
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.fit import fit_retrieval
from polymodal.tasks.retrieval.predict import load_run, search_run


@pytest.fixture
def run(random_feature_run) -> Path:
    return random_feature_run


def cli_error(capsys, *args: str) -> str:
    """Run the CLI, check exit code 2 and exactly one stderr line; return that line."""
    capsys.readouterr()
    assert main(["search", *args]) == 2
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err
    assert out.out == ""
    return lines[0]


def broken_copy(run: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


def test_missing_and_wrong_run_folders(run, tmp_path, capsys):
    assert "run folder not found" in cli_error(capsys, str(tmp_path / "nope"), "--text", "cat")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert "is a file" in cli_error(capsys, str(a_file), "--text", "cat")
    (tmp_path / "empty").mkdir()
    assert "no config.yaml" in cli_error(capsys, str(tmp_path / "empty"), "--text", "cat")
    other = broken_copy(run, tmp_path, "other")
    cfg = other / "config.yaml"
    cfg.write_text(cfg.read_text().replace("task: retrieval", "task: classification"))
    assert "not a retrieval run" in cli_error(capsys, str(other), "--text", "cat")


@pytest.mark.parametrize("damage, expect", [
    (lambda r: (r / "config.yaml").write_text("task: retrieval\nconfig: [1, 2\n"),
     "corrupt run config"),
    (lambda r: (r / "model.safetensors").unlink(), "model.safetensors is missing"),
    (lambda r: (r / "model.safetensors").write_bytes(
        (r / "model.safetensors").read_bytes()[:100]), "corrupt weights"),
    (lambda r: (r / "config.yaml").write_text(
        (r / "config.yaml").read_text().replace("in_dim: 384", "in_dim: 385")),
     "does not match"),
    (lambda r: shutil.rmtree(r / "index"), "index"),
    (lambda r: (r / "index" / "index.json").write_text("{"), "index"),
    (lambda r: np.save(r / "index" / "vectors.npy", np.zeros((3, 2), np.float32)),
     "vectors.npy"),
])
def test_corrupt_run_folder(run, tmp_path, capsys, damage, expect):
    broken = broken_copy(run, tmp_path, "broken")
    damage(broken)
    assert expect in cli_error(capsys, str(broken), "--text", "cat")


def test_bad_queries(run, tmp_path, capsys):
    png = next(Path(sample_path("openclipart")).parent.glob("images/*.png"))
    text_file, empty, truncated = (tmp_path / n for n in ("t.png", "e.png", "cut.png"))
    text_file.write_text("this is not an image")
    empty.write_bytes(b"")
    truncated.write_bytes(png.read_bytes()[: png.stat().st_size * 2 // 3])
    for f in (text_file, empty, truncated):
        assert f"query image {f}" in cli_error(capsys, str(run), "--image", str(f))
    assert "not found" in cli_error(capsys, str(run), "--image", str(tmp_path / "none.png"))
    assert "empty text" in cli_error(capsys, str(run), "--text", "")
    assert "empty text" in cli_error(capsys, str(run), "--text", " \t ")
    assert "exactly one query" in cli_error(capsys, str(run))
    assert "exactly one query" in cli_error(capsys, str(run), "--text", "a", "--image", str(png))
    assert "cannot search with audio" in cli_error(capsys, str(run), "--audio", str(png))


def test_k_out_of_range(run, capsys):
    n = len(load_run(run).index)
    for k in ("0", "-2", str(n + 1)):
        assert f"index size {n}" in cli_error(capsys, str(run), "--text", "cat", "-k", k)
    # the boundary itself is fine: every target, best first
    hits = search_run(load_run(run), text="cat", k=n)
    assert len(hits) == n and hits[0].score >= hits[-1].score


def test_features_folder_must_match_the_encoders(run, tmp_path):
    manifest = sample_path("openclipart")
    feats = write_features(tmp_path / "f", manifest, {"text": 384, "image": 1280},
                           {"text": "minilm", "image": "efficientnet-lite0"})
    cfg = RetrievalConfig(manifest=str(manifest), features=str(feats), loss="cca", dim=8,
                          encoders={"text": "hf:some/model"})
    with pytest.raises(UsageError, match="encoded with 'minilm'"):
        fit_retrieval(cfg, tmp_path / "r", with_baselines=False, progress=False)
    with pytest.raises(UsageError, match="no 'audio' column"):  # the manifest, before encoding
        fit_retrieval(cfg.model_copy(update={"encoders": {}, "query": "audio"}), tmp_path / "r",
                      with_baselines=False, progress=False)
