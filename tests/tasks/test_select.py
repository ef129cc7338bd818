"""Model selection (`fit retrieval --loss auto`, the default): planted sets where a linear map is
exact (a closed-form candidate must win) and where no linear map works (a trained one must),
on the bundled av-digits sample manifest with feature folders written here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polymodal.cli.main import main
from polymodal.data.datasets import sample_path
from polymodal.data.manifest import read_manifest
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.fit import fit_retrieval
from polymodal.tasks.retrieval.predict import load_run
from polymodal.tasks.retrieval.select import CANDIDATES, format_selection

pytestmark = pytest.mark.timeout(120)
MANIFEST = sample_path("av-digits")
NAMES = {"audio": "logmel", "image": "efficientnet-lite0", "text": "minilm"}


def write_vectors(folder: Path, vectors: dict[str, np.ndarray]) -> Path:
    """A feature folder (`polymodal encode --out` layout): one vector per manifest row."""
    ids = [r.id for r in read_manifest(MANIFEST).records]
    folder.mkdir(parents=True)
    mods = {}
    for m, x in vectors.items():
        np.save(folder / f"{m}.npy", x.astype(np.float32))
        np.save(folder / f"{m}_rows.npy", np.arange(len(ids), dtype=np.int64))
        mods[m] = {"encoder": NAMES[m], "name": NAMES[m], "dim": x.shape[1], "count": len(ids)}
    (folder / "ids.json").write_text(json.dumps(ids))
    (folder / "features.json").write_text(json.dumps({"manifest": str(MANIFEST),
                                                      "n_rows": len(ids), "modalities": mods}))
    return folder


def labels() -> np.ndarray:
    return np.array([r.label for r in read_manifest(MANIFEST).records], int)


def linear_set(tmp: Path) -> Path:
    """Target = an exact linear map of the query (row relevance): ridge / CCA are exact."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((len(labels()), 48))
    return write_vectors(tmp / "lin", {"audio": x, "image": x @ rng.standard_normal((48, 64))})


def shell_set(tmp: Path) -> Path:
    """Query: the class code times a random sign; target: another class code + noise.
    E[target | query] is odd in the sign, so every linear map is at chance."""
    rng = np.random.default_rng(1)
    y = labels()
    sign = rng.choice([-1.0, 1.0], size=(len(y), 1))
    x = sign * rng.standard_normal((10, 32))[y] + 0.1 * rng.standard_normal((len(y), 32))
    codes = rng.standard_normal((10, 32))
    return write_vectors(tmp / "shell", {"audio": x, "image": codes[y] + 0.3 *
                                         rng.standard_normal((len(y), 32))})


def config(feats: Path, **kw) -> RetrievalConfig:
    train = {"epochs": 10, "patience": 10, "progress": False, "lr": 3e-3}
    return RetrievalConfig(manifest=str(MANIFEST), features=str(feats), query="audio",
                           target="image", hidden=64, dim=32, batch_size=64, index="exact",
                           train=train, **kw)


def test_linear_set_selects_a_closed_form_candidate_and_records_scores(tmp_path):
    cfg = config(linear_set(tmp_path), relevance="row")
    assert cfg.loss == "auto"  # the default when the user names no loss
    res = fit_retrieval(cfg, tmp_path / "run", progress=False)
    sel = json.loads((tmp_path / "run" / "selection.json").read_text())
    by = {c["name"]: c for c in sel["candidates"]}
    assert list(by) == list(CANDIDATES) and all(c["status"] == "ok" for c in by.values())
    assert all(c["seconds"] >= 0 and 0 <= c["val_score"] <= 1 for c in by.values())
    assert sel["chosen"] in ("ridge", "cca", "ridge-cca"), format_selection(sel)
    assert by[sel["chosen"]]["val_score"] > 0.9
    assert by[sel["chosen"]]["val_score"] >= max(c["val_score"] for c in by.values())
    # the chosen model is the run's model: test metrics, config and search as for --loss NAME
    run = load_run(tmp_path / "run")
    assert run.config.loss == sel["chosen_loss"] and res["method"] == sel["chosen_loss"]
    assert res["metrics"]["audio->image"]["R@1"] > 0.9
    assert res["metrics"]["audio->image"]["R@1"] >= res["baselines"]["cca"]["audio->image"][
        "R@1"] - 0.05


def test_shell_set_selects_a_trained_candidate(tmp_path):
    cfg = config(shell_set(tmp_path), relevance="label")
    res = fit_retrieval(cfg, tmp_path / "run", with_baselines=True, progress=False)
    sel = res["selection"]
    by = {c["name"]: c for c in sel["candidates"]}
    assert sel["chosen"] in ("infonce", "siglip", "autoencoder"), format_selection(sel)
    linear_best = max(by[n]["val_score"] for n in ("ridge", "cca", "ridge-cca"))
    assert by[sel["chosen"]]["val_score"] > linear_best + 0.2, format_selection(sel)
    for base in ("ridge", "cca"):  # and on test the selected model beats both baselines
        assert res["metrics"]["audio->image"]["R@1"] > \
            res["baselines"][base]["audio->image"]["R@1"] + 0.1


def test_budget_skips_are_reported_and_cli_prints_table(tmp_path, capsys):
    feats = linear_set(tmp_path)
    assert main(["fit", "retrieval", "-q", "--manifest", str(MANIFEST), "--features",
                 str(feats), "--query", "audio", "--target", "image", "--loss", "auto",
                 "--select-budget-s", "0.000001", "--index", "exact", "--no-report",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    sel = json.loads((tmp_path / "run" / "selection.json").read_text())
    stat = {c["name"]: c["status"] for c in sel["candidates"]}
    assert stat == {"ridge": "ok", **{n: "skipped" for n in CANDIDATES[1:]}}
    assert sel["chosen"] == "ridge" and "budget" in out and "chosen: ridge" in out
    lines = [ln for ln in out.splitlines() if ln.startswith("infonce ")]
    assert len(lines) == 1 and "skipped: budget" in lines[0]  # in the printed table
    assert "auto:ridge audio->image" in out  # the metrics table names the selected model
