"""`polymodal compare`, `robustness` over a compare folder, `fit classify` and bad input, all
through the CLI (`polymodal.cli.main.main`) on the tiny real audio-visual digits set."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from polymodal.cli.main import main
from polymodal.tasks.classify.loaded import load_classifier

from test_classification import build_avdigits_tiny, edited_manifest

FAST = ["--epochs", "40", "--patience", "8", "--lr", "5e-3", "--hidden", "64", "-q"]
METHODS = ["early", "late", "unimodal:image", "unimodal:audio"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def avd(shared_data, tmp_path_factory) -> Path:
    return build_avdigits_tiny(shared_data, tmp_path_factory.getbasetemp() / "avdigits-tiny")


def _base(avd: Path) -> list[str]:
    return ["--manifest", str(avd), "--features", str(avd.parent / "features"),
            "--modalities", "image,audio"]


@pytest.fixture(scope="module")
def cmp(avd, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cmp") / "c"
    rc = main(["compare", *_base(avd), "--fusions", ",".join(METHODS), "--seeds", "2",
               "--modality-dropout", "0.3", *FAST, "--out", str(out)])
    assert rc == 0
    return out


def test_compare_writes_results_summary_and_report(cmp, capsys):
    results = _rows(cmp / "results.csv")
    assert [(r["method"], r["seed"]) for r in results] == [(m, s) for m in METHODS
                                                           for s in ("0", "1")]
    for col in ("accuracy", "macro_f1", "auroc", "train_seconds", "params", "peak_mem_mb"):
        assert all(r[col] != "" for r in results), col
    summary = _rows(cmp / "summary.csv")
    means = [float(r["accuracy"].split("±")[0]) for r in summary]
    assert means == sorted(means, reverse=True) and len(summary) == len(METHODS)
    for r in summary:  # the summary is the mean ± std of the per-seed results
        accs = [float(x["accuracy"]) for x in results if x["method"] == r["method"]]
        mean, std = (float(v) for v in r["accuracy"].split("±"))
        assert mean == pytest.approx(np.mean(accs), abs=1e-4)
        assert std == pytest.approx(np.std(accs), abs=1e-4)
    best = {r["method"]: float(r["accuracy"].split("±")[0]) for r in summary}
    assert max(best["early"], best["late"]) > max(best["unimodal:image"],
                                                  best["unimodal:audio"]) + 0.03, best
    html = (cmp / "report.html").read_text()
    assert "unimodal:audio" in html and "<h2>runs/" not in html
    # every method saw the same test rows
    ids = [[r["id"] for r in _rows(cmp / "runs" / f"{m.replace(':', '-')}-s0" / "predictions.csv")]
           for m in METHODS]
    assert all(i == ids[0] for i in ids)
    doc = json.loads((cmp / "compare.json").read_text())
    assert doc["skipped_rows"] == 2 and doc["methods"] == METHODS


def test_robustness_over_compare_folder(cmp, capsys):
    rc = main(["robustness", str(cmp), "--missing", "audio:0,0.5,1", "--noise",
               "image:snr=20,-10", "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "audio missing 0.5" in out and "image SNR -10 dB" in out
    rows = _rows(cmp / "robustness.csv")
    val = {(r["method"], r["kind"], float(r["level"])): float(r["value"]) for r in rows}
    acc = {r["method"]: float(r["accuracy"].split("±")[0]) for r in _rows(cmp / "summary.csv")}
    for m in METHODS:  # nothing missing = the compare's own test accuracy
        assert val[(m, "missing", 0.0)] == pytest.approx(acc[m], abs=1e-4)
    img = [val[("unimodal:image", "missing", f)] for f in (0.0, 0.5, 1.0)]
    assert max(img) - min(img) < 1e-9  # the image-only model never looks at audio
    aud = [val[("unimodal:audio", "missing", f)] for f in (0.0, 0.5, 1.0)]
    assert aud[0] > aud[1] > aud[2] and aud[2] < 0.2  # only the prior is left: near chance
    early = [val[("early", "missing", f)] for f in (0.0, 0.5, 1.0)]
    assert early[0] > early[1] > early[2] > 0.2
    assert val[("unimodal:image", "noise", -10.0)] < val[("unimodal:image", "noise", 20.0)] - 0.1
    assert (cmp / "robustness.png").stat().st_size > 5000
    assert "robustness" in (cmp / "report.html").read_text().lower()  # the report was redone


def test_fit_classify_cli_with_yaml_and_overrides(avd, tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"manifest: {avd}\nfeatures: {avd.parent / 'features'}\n"
                   "modalities: [image, audio]\nfusion: late\nhidden: 32\n"
                   "train: {epochs: 3, lr: 0.005}\n")
    rc = main(["fit", "classify", "--config", str(cfg), "--fusion", "gated",
               "--modality-dropout", "0.2", "--epochs", "5", "-q", "--out", str(tmp_path / "r")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "gated (classification, target label): test accuracy=" in out
    assert "skipped 2" in out  # the two rows with neither image nor audio
    doc = load_classifier(tmp_path / "r").doc
    c = doc["config"]
    assert (doc["method"], c["hidden"], c["modality_dropout"]) == ("gated", 32, 0.2)
    assert (c["train"]["epochs"], c["train"]["lr"]) == (5, 0.005)


@pytest.mark.parametrize("case, args, message", [
    ("unknown fusion", ["--fusion", "bogus"],
     "unknown fusion 'bogus'; valid: early, weighted, late, attention, gated, tensor, lowrank, "
     "cross-attention, film, relation, unimodal:audio, unimodal:image"),
    ("no label column", ["--manifest", "NOLABEL"], "target column 'label' not found"),
    ("one class", ["--manifest", "ONECLASS"], "has 1 class (3) in the training rows"),
    ("text regression target", ["--target", "note", "--task", "regression"],
     "'ok' is not a number"),
    ("bad option value", ["--modality-dropout", "1.5"], "invalid configuration"),
])
def test_bad_input_exits_2_with_a_clear_message(avd, tmp_path, capsys, case, args, message):
    paths = {"NOLABEL": edited_manifest(tmp_path / "nolabel.jsonl", avd, 300, label=None),
             "ONECLASS": edited_manifest(tmp_path / "oneclass.jsonl", avd, 300, label=3)}
    args = [str(paths.get(a, a)) for a in args]
    base = _base(avd)
    if "--manifest" in args:
        base = base[2:]
    rc = main(["fit", "classify", *base, "--fusion", "early", *args, "--epochs", "1", "-q",
               "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2, case
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err


def test_compare_and_robustness_argument_errors(avd, cmp, tmp_path, capsys):
    rc = main(["compare", *_base(avd), "--fusions", "early,nope", "--out", str(tmp_path / "x")])
    assert rc == 2 and "unknown fusion 'nope'" in capsys.readouterr().err
    rc = main(["robustness", str(cmp), "--missing", "audio=0.5"])
    assert rc == 2 and "MODALITY:LEVELS" in capsys.readouterr().err
    rc = main(["robustness", str(cmp), "--missing", "text:0,1"])
    assert rc == 2 and "unknown modality 'text'" in capsys.readouterr().err
    rc = main(["robustness", str(tmp_path), "--missing", "audio:1"])
    assert rc == 2 and "not a classification run" in capsys.readouterr().err


def test_compare_regression_target(avd, tmp_path, capsys):
    out = tmp_path / "reg"
    assert main(["compare", *_base(avd), "--target", "ink", "--fusions", "early,unimodal:image",
                 "--seeds", "1", *FAST, "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[:4] == ["method", "seeds", "r2", "mae"]
    results = _rows(out / "results.csv")
    assert list(results[0])[:4] == ["method", "seed", "r2", "mae"]
    summary = _rows(out / "summary.csv")
    r2 = [float(r["r2"].split("±")[0]) for r in summary]
    assert r2 == sorted(r2, reverse=True) and r2[0] > 0.3  # ink is visible in the image
    assert json.loads((out / "compare.json").read_text())["primary_metric"] == "r2"
