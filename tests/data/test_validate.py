"""validate_manifest on real data (happy paths) and on mixed good/bad manifests."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from badcorpus import good_png, good_wav, png_header  # noqa: E402

from polymodal.data.validate import ValidationReport, render_report, validate_manifest  # noqa: E402
from polymodal.core.errors import UsageError  # noqa: E402


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_real_images_and_audio_validate_clean(shared_data, tmp_path):
    images = sorted((shared_data / "openclipart" / "images" / "food").glob("*.png"))[:24]
    wavs = sorted((shared_data / "fsdd" / "recordings").glob("7_*.wav"))[:12]
    rows = [{"id": f"i{k}", "image": str(p), "text": p.stem.replace("_", " ")}
            for k, p in enumerate(images)]
    rows += [{"id": f"a{k}", "audio": str(p), "label": p.name[0]} for k, p in enumerate(wavs)]
    report = validate_manifest(_jsonl(tmp_path / "m.jsonl", rows), progress=True)
    assert report.errors == [] and report.ok and report.exit_code == 0
    assert report.n_rows == report.n_usable == len(images) + len(wavs) == 36
    assert report.counts == {"image": 24, "text": 24, "audio": 12}
    # rows without a text cell are real "text missing" rows: reported as warnings only
    assert {p.row for p in report.warnings} == set(range(25, 37))
    assert all(p.reason.startswith("empty text") for p in report.warnings)
    json.dumps(report.to_dict())


def test_mixed_manifest_reports_each_bad_row(tmp_path):
    good_png(tmp_path / "ok.png")
    (tmp_path / "bomb.png").write_bytes(png_header(50_000, 50_000))
    good_wav(tmp_path / "long.wav", seconds=2.0)
    rows = [
        {"id": "1", "image": "ok.png", "text": "fine"},
        {"id": "2", "image": "bomb.png", "text": "too big"},
        {"id": "3", "image": "ok.png", "text": "  "},
        {"id": "4", "audio": "long.wav", "text": "caf\ufffd"},
        {"id": "5", "image": "bomb.png", "text": "same bad file again"},
        {"id": "6", "audio": "nowhere.wav", "text": "gone", "split": "dev"},
    ]
    report = validate_manifest(_jsonl(tmp_path / "m.jsonl", rows), max_seconds=1.0)
    got = [(p.row, p.column, p.level) for p in report.problems]
    assert got == [(2, "image", "error"), (3, "text", "warning"), (4, "audio", "warning"),
                   (4, "text", "warning"), (5, "image", "error"), (6, "audio", "error")]
    reasons = [p.reason for p in report.problems]
    assert reasons[0] == "bomb.png: image too large (50000×50000 pixels > limit of " \
                         "89,478,485 pixels)"
    assert reasons[0] == reasons[4]  # decoded once, reported for each row that uses it
    assert "empty text" in reasons[1] and "only the first 1 s" in reasons[2]
    assert "U+FFFD" in reasons[3] and reasons[5] == "nowhere.wav: file not found"
    assert report.n_rows == 6 and report.n_usable == 3 and report.exit_code == 1
    assert report.counts == {"image": 2, "text": 5, "audio": 1}


def test_check_media_false_only_checks_existence(tmp_path):
    good_png(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    rows = [{"id": "1", "image": "ok.png"}, {"id": "2", "image": "broken.png"},
            {"id": "3", "image": "gone.png"}]
    m = _jsonl(tmp_path / "m.jsonl", rows)
    quick = validate_manifest(m, check_media=False)
    assert [(p.row, p.reason) for p in quick.problems] == [(3, "gone.png: file not found")]
    full = validate_manifest(m)
    assert [p.row for p in full.problems] == [2, 3]


def test_file_level_error_becomes_one_problem_report(tmp_path):
    report = validate_manifest(tmp_path / "absent.csv")
    assert isinstance(report, ValidationReport) and len(report.problems) == 1
    p = report.problems[0]
    assert p.row is None and p.file == str(tmp_path / "absent.csv")
    assert "not found" in p.reason and report.exit_code == 1


def test_bad_arguments_raise_usage_error(tmp_path):
    with pytest.raises(UsageError):
        validate_manifest(tmp_path / "m.csv", sample_rate=0)


def test_render_report_aligned_table(tmp_path):
    good_png(tmp_path / "ok.png")
    rows = [{"id": "1", "image": "ok.png", "text": "x"}]
    rows += [{"id": str(k), "image": f"missing_{k}.png", "text": "x"} for k in range(2, 13)]
    report = validate_manifest(_jsonl(tmp_path / "m.jsonl", rows))
    text = render_report(report)
    lines = text.splitlines()
    assert lines[0] == str(report.path)
    table = lines[1:-1]
    assert table[0].split(" | ") == ["row", "column", "level", "reason"]
    assert len({tuple(i for i, c in enumerate(line) if c == "|") for line in table[2:]}) == 1
    assert table[0].index("|") == table[2].index("|")  # header aligned with the rows
    assert table[-1].startswith("12 ") and "missing_12.png: file not found" in table[-1]
    assert lines[-1] == "12 rows, 1 usable (image 1, text 12); 11 errors, 0 warnings"
    short = render_report(report, limit=3).splitlines()
    assert short[-2] == "... and 8 more problems"


def test_render_clean_report(shared_data):
    report = validate_manifest(shared_data / "openclipart" / "captions.jsonl",
                               columns={"text": "title"}, check_media=False)
    out = render_report(report)
    assert "|" not in out and "0 errors, 0 warnings" in out


@pytest.mark.slow
def test_full_openclipart_validates_in_seconds(shared_data):
    t0 = time.perf_counter()
    report = validate_manifest(shared_data / "openclipart" / "captions.jsonl",
                               columns={"text": "title"})
    elapsed = time.perf_counter() - t0
    assert report.ok and report.n_usable == report.n_rows > 7000
    assert elapsed < 60, f"decoding {report.n_rows} images took {elapsed:.1f} s"


def test_report_table_method_matches_render(tmp_path):
    rows = [{"id": "1", "image": "gone.png", "text": "x"}, {"id": "2", "text": "y"}]
    report = validate_manifest(_jsonl(tmp_path / "m.jsonl", rows))
    assert report.table() == render_report(report)
    assert "gone.png: file not found" in report.table(limit=1)
