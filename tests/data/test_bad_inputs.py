"""Every bad input of the corpus gives a clear message naming the row and column (file-level
ones name the file); the stereo 44.1 kHz file loads fine."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from badcorpus import FILE_LEVEL, MAKERS, Case  # noqa: E402

from polymodal.data.loaders import load_audio, load_image  # noqa: E402
from polymodal.data.manifest import read_manifest  # noqa: E402
from polymodal.data.validate import render_report, validate_manifest  # noqa: E402
from polymodal.core.errors import DataError, DecodeError  # noqa: E402

ROW_CASES = [n for n in MAKERS if n not in FILE_LEVEL and n != "stereo_44k"]


def _make(name: str, tmp_path: Path) -> Case:
    return MAKERS[name](tmp_path)


@pytest.mark.parametrize("name", ROW_CASES)
def test_row_level_problem_named_by_row_column_and_reason(name, tmp_path):
    case = _make(name, tmp_path)
    report = validate_manifest(case.manifest, columns=case.columns)
    hits = [p for p in report.problems if p.row == case.row and p.column == case.column]
    assert hits, f"no problem at row {case.row}, column {case.column}: {report.problems}"
    assert any(case.phrase in p.reason and p.level == case.level for p in hits), hits
    assert all(p.file == str(case.manifest.resolve()) for p in report.problems)
    # only the bad row is affected: the good rows around it stay usable
    assert {p.row for p in report.problems} == {case.row}
    assert report.n_rows == 3
    assert report.n_usable == (3 if case.level == "warning" else 2)
    assert report.ok is (case.level == "warning")
    assert report.exit_code == (0 if case.level == "warning" else 1)
    table = render_report(report)
    assert case.phrase in table and case.column in table


MEDIA_CASES = ["truncated_png", "zero_byte", "text_as_jpg", "one_pixel", "huge_declared",
               "missing_file", "wav_bad_header", "empty_audio"]


@pytest.mark.parametrize("name", MEDIA_CASES)
def test_loader_raises_decode_error_naming_the_file(name, tmp_path):
    case = _make(name, tmp_path)
    load = load_audio if case.column == "audio" else load_image
    with pytest.raises(DecodeError) as exc:
        load(case.media)
    assert exc.value.path == str(case.media)
    assert case.phrase in exc.value.reason
    assert "Traceback" not in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("name", FILE_LEVEL)
def test_file_level_problem_names_the_file(name, tmp_path):
    case = _make(name, tmp_path)
    with pytest.raises(DataError) as exc:
        read_manifest(case.manifest, columns=case.columns)
    prob = exc.value.problem
    assert prob.file == str(case.manifest.resolve())
    assert case.phrase in prob.reason
    assert prob.row == case.row and prob.column == case.column
    # validate turns it into a report with exactly that one problem
    report = validate_manifest(case.manifest, columns=case.columns)
    assert [p.reason for p in report.problems] == [prob.reason]
    assert report.exit_code == 1
    assert str(case.manifest.resolve()) in str(prob)


def test_non_utf8_message_names_the_byte_and_line(tmp_path):
    case = _make("non_utf8_csv", tmp_path)
    with pytest.raises(DataError, match=r"byte 0xe9 at line 3"):
        read_manifest(case.manifest)


def test_huge_declared_size_is_refused_from_the_header(tmp_path):
    case = _make("huge_declared", tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(DecodeError, match=r"100000×100000 pixels > limit"):
        load_image(case.media)
    # decoding 10^10 pixels would take minutes and ~30 GB; the header check takes microseconds
    assert time.perf_counter() - t0 < 1.0


def test_stereo_44k_loads_as_mono_16k(tmp_path):
    case = _make("stereo_44k", tmp_path)
    report = validate_manifest(case.manifest)
    assert report.problems == [] and report.ok and report.n_usable == 3
    wav = load_audio(case.media, sample_rate=16000)
    assert wav.ndim == 1 and wav.dtype == np.float32
    assert abs(len(wav) - 8000) <= 1  # 0.5 s at 16 kHz
    spectrum = np.abs(np.fft.rfft(wav))
    peak_hz = np.argmax(spectrum) * 16000 / len(wav)
    assert abs(peak_hz - 440.0) < 5.0  # the 440 Hz tone survives mixdown and resampling


def test_parquet_nan_in_id_column_is_an_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"id": pa.array([1.0, float("nan"), 3.0]),
                             "text": ["a", "b", "c"]}), path)
    m = read_manifest(path)
    assert [r.row for r in m.records] == [1, 3]
    assert len(m.problems) == 1  # one problem for the cell, not "NaN" and "empty id" both
    p = m.problems[0]
    assert (p.row, p.column, p.level) == (2, "id", "error") and "NaN" in p.reason


def test_whole_corpus_in_one_report_each(tmp_path):
    """All cases at once: each manifest reports exactly its own problem (none leak)."""
    from badcorpus import build_corpus

    corpus = build_corpus(tmp_path)
    assert set(corpus) == set(MAKERS)
    for name, case in corpus.items():
        report = validate_manifest(case.manifest, columns=case.columns)
        if name == "stereo_44k":
            assert report.problems == []
        else:
            assert len(report.problems) == 1, (name, report.problems)
            assert case.phrase in report.problems[0].reason
