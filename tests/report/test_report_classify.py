"""Reports for prediction runs on a small REAL audio+image classification run (shared with the
serve tests): one run (confusion matrix, accuracy by modalities present, attention weights,
importance and robustness once the analysis commands wrote them) and a real compare folder."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def run(tmp_path_factory, serve_testdata) -> Path:
    return serve_testdata.ensure_small_classify_run(tmp_path_factory.getbasetemp())


def _sections(html: str) -> list[str]:
    import re

    return re.findall(r"<h2>(.*?)</h2>", html)


def _images(html: str) -> int:
    return html.count("<img class='plot' src='data:image/png;base64,")


def test_classification_report(run, tmp_path):
    from polymodal.report.retrieval import write_report

    out = write_report(run, tmp_path / "r.html")
    html = out.read_text(encoding="utf-8")
    heads = _sections(html)
    for h in ("Metrics", "Modalities", "Confusion matrix (test split)",
              "Accuracy by modalities present", "Fusion weights by class", "Training loss"):
        assert h in heads, heads
    assert _images(html) == 3 and "src='/" not in html and "file:" not in html
    metrics = json.loads((run / "metrics.json").read_text())
    preds = list(csv.DictReader(open(run / "predictions.csv")))
    acc = sum(p["target"] == p["prediction"] for p in preds) / len(preds)
    assert acc == pytest.approx(metrics["metrics"]["accuracy"])
    # the by-modalities table: every test row had both, with the run's accuracy
    assert f"<td>audio+image</td><td>{len(preds)}</td><td>{acc:.3f}</td>" in html
    assert "robustness" not in html.lower()


def test_classification_report_shows_analysis_outputs(run, tmp_path):
    import shutil

    from polymodal.report.retrieval import write_report
    from polymodal.tasks.classify.analysis import explain_dataset, robustness

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    explain_dataset(copy, repeats=2)
    rows = robustness(copy, missing={"image": [0.0, 1.0]}, progress=False)
    html = write_report(copy, tmp_path / "r.html").read_text(encoding="utf-8")
    heads = _sections(html)
    assert "Modality importance" in heads and "Robustness: missing and noisy modalities" in heads
    assert _images(html) == 5
    assert len(rows) == 2 and "<td>missing</td>" in html


def test_compare_report_of_a_real_compare(run, tmp_path):
    from polymodal.tasks.classify.analysis import explain_dataset
    from polymodal.tasks.classify.config import ClassifierConfig
    from polymodal.report import compare_report
    from polymodal.tasks.classify.compare import compare_methods

    from polymodal.core.runfolder import RunFolder
    doc = RunFolder.open(run).config  # paths resolved
    cfg = ClassifierConfig.model_validate(doc)
    res = compare_methods(cfg, tmp_path / "cmp", methods=["early", "attention"], seeds=1,
                          progress=False)
    for r in ("runs/early-s0", "runs/attention-s0"):
        explain_dataset(tmp_path / "cmp" / r, repeats=1)
    html = compare_report(tmp_path / "cmp", tmp_path / "cmp" / "report.html").read_text(encoding="utf-8")
    heads = _sections(html)
    best = res["summary"][0]["method"]
    assert heads[0].startswith("Summary") and f"Best method: {best} (runs/{best}-s0)" in heads
    assert "accuracy by method" in heads
    assert "Modality importance (Shapley)" in heads
    assert "Confusion matrix (test split)" in heads
    assert any(h.startswith("Fusion weights by class") for h in heads)
    assert "<td>early</td>" in html and "<td>attention</td>" in html
    assert "predictions.csv" not in html  # run folders' CSVs are summarised, not dumped


def test_fit_classify_cli_writes_the_report(run, tmp_path, capsys):
    from polymodal.cli.main import main

    from polymodal.core.runfolder import RunFolder
    doc = RunFolder.open(run).config  # paths resolved
    args = ["fit", "classify", "-q", "--manifest", doc["manifest"], "--features",
            doc["features"], "--modalities", "image,audio", "--fusion", "late", "--epochs", "2"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    page = (tmp_path / "a" / "report.html").read_text(encoding="utf-8")
    assert "Confusion matrix (test split)" in page and "Metrics" in page
    assert "report: " in capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "b"), "--no-report"]) == 0
    assert not (tmp_path / "b" / "report.html").exists()
