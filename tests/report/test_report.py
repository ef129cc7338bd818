"""HTML reports: a stand-alone retrieval report for a small real run, and a compare report."""
from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, serve_testdata) -> Path:
    return serve_testdata.ensure_small_run(tmp_path_factory.getbasetemp())


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Collect:
    p = _Collect()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _png(uri: str):
    from PIL import Image

    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


@pytest.fixture(scope="module")
def report(small_run, tmp_path_factory) -> Path:
    from polymodal.report.retrieval import write_report

    out = tmp_path_factory.mktemp("report") / "report.html"
    assert write_report(small_run, out) == out
    return out


def test_retrieval_report_stands_alone(report):
    html = report.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and "charset='utf-8'" in html
    doc = _parse(report)
    for tag, attrs in doc.tags:
        assert tag not in ("script", "link", "iframe"), tag
        for key in ("src", "href"):
            if key in attrs:
                assert attrs[key].startswith("data:"), (tag, attrs[key][:80])
    assert not re.search(r"https?://", html)


def test_retrieval_report_has_the_metrics_table(report, small_run):
    metrics = json.loads((small_run / "metrics.json").read_text())
    html = report.read_text(encoding="utf-8")
    for head in ("R@1", "R@5", "R@10", "MedR", "mAP"):
        assert f"<th>{head}</th>" in html
    for direction, m in metrics.items():  # every number of metrics.json is in its row
        row = re.search(rf"<tr><td>infonce</td><td>{re.escape(direction.replace('>', '&gt;'))}"
                        r"</td>(.*?)</tr>", html)
        assert row, direction
        cells = re.findall(r"<td>(.*?)</td>", row.group(1))
        assert cells == [f"{m['R@1']:.3f}", f"{m['R@5']:.3f}", f"{m['R@10']:.3f}",
                         f"{m['MedR']:.1f}", f"{m['mAP']:.3f}"]


def test_retrieval_report_plots_and_gallery(report):
    doc = _parse(report)
    plots = [a["src"] for t, a in doc.tags if t == "img" and a.get("class") == "plot"]
    assert len(plots) == 4  # Recall@K, training loss, heat map, t-SNE
    for uri in plots:
        with _png(uri) as im:
            assert im.width > 200 and im.height > 150
            assert len(np.unique(np.asarray(im.convert("L")))) > 20  # something was drawn
    text = " ".join(doc.text)
    for title in ("Recall@K", "Training loss", "Similarity heat map", "Shared space",
                  "Example queries"):
        assert title in text
    thumbs = [a["src"] for t, a in doc.tags if t == "img" and a.get("class") != "plot"]
    assert len(thumbs) == 6 * 5  # 6 example queries x top 5 drawings
    with _png(thumbs[0]) as im:
        assert max(im.size) <= 128


def test_report_errors(tmp_path, small_run):
    import shutil

    from polymodal.core.errors import PolymodalError
    from polymodal.report.retrieval import write_report

    with pytest.raises(PolymodalError, match="neither a run folder"):
        write_report(tmp_path, tmp_path / "r.html")
    broken = tmp_path / "run"
    shutil.copytree(small_run, broken, ignore=shutil.ignore_patterns("features"))
    (broken / "metrics.json").unlink()
    with pytest.raises(PolymodalError, match="metrics.json"):
        write_report(broken, tmp_path / "r.html")
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "summary.csv").write_text("method,accuracy\n")
    with pytest.raises(PolymodalError, match="no rows"):
        write_report(tmp_path / "cmp", tmp_path / "r.html")


def test_compare_report_from_hand_written_csv(tmp_path):
    """A summary.csv alone (no compare.json, no runs) still gives a table and the bar chart."""
    from polymodal.report.retrieval import write_report

    root = tmp_path / "cmp"
    root.mkdir()
    (root / "summary.csv").write_text("method,accuracy_test,f1\nearly,0.91 ± 0.02,0.90\n"
                                      "late,0.87 ± 0.01,0.86\n<gated>,0.93,0.92\n")
    out = write_report(root, tmp_path / "cmp.html")
    html = out.read_text(encoding="utf-8")
    assert "&lt;gated&gt;" in html and "<gated>" not in html
    assert "<td>0.87 ± 0.01</td>" in html
    plots = [a["src"] for t, a in _parse(out).tags if t == "img"]
    assert len(plots) == 1
    with _png(plots[0]) as im:
        assert im.width > 300


def test_auto_report_never_fails_the_fit(tmp_path, capsys):
    from polymodal.report.retrieval import auto_report

    (tmp_path / "config.yaml").write_text("format_version: 2\ntask: caption\nconfig: {}\n")
    (tmp_path / "COMPLETE").write_text("")
    assert auto_report(tmp_path) is None
    assert "no report for a 'caption' run" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text("task: retrieval\nconfig: {}\n")
    assert auto_report(tmp_path) is None
    assert "warning: no report" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_fit_retrieval_cli_writes_the_report_unless_told_not_to(small_run, tmp_path, capsys,
                                                                monkeypatch):
    import functools

    from polymodal.cli.main import main
    from polymodal.tasks.retrieval import fit as retrieval
    from polymodal.tasks.retrieval.predict import load_run

    # the CCA baseline on 1280-d image features takes most of a minute on 2 cores; it is not
    # what this test is about
    monkeypatch.setattr(retrieval, "fit_retrieval",
                        functools.partial(retrieval.fit_retrieval, with_baselines=False))

    args = ["fit", "retrieval", "-q", "--manifest", load_run(small_run).config.manifest,
            "--query", "text", "--target", "image", "--features", str(small_run / "features"),
            "--relevance", "caption_group", "--epochs", "1", "--index", "exact",
            "--loss", "infonce"]  # a named loss: model selection is tests/tasks/test_select.py
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    page = (tmp_path / "a" / "report.html").read_text(encoding="utf-8")
    assert "Recall@K (test split)" in page and "Example queries" in page
    assert f"report: {tmp_path / 'a' / 'report.html'}" in capsys.readouterr().out
    from polymodal.cli.main import build_parser

    assert build_parser().parse_args(args + ["--out", "x", "--no-report"]).no_report
