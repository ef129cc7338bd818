"""Manifest reading: CSV, JSONL, Parquet; roles, mapping, paths, row numbering, problems."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from polymodal.data.manifest import MODALITIES, ROLES, read_manifest, write_manifest
from polymodal.core.errors import DataError

ROWS = [
    {"id": "a", "image": "img/a.png", "text": "a red car", "label": "car", "split": "train"},
    {"id": "b", "image": "", "text": "a blue boat", "label": "boat", "split": "validation"},
    {"id": "c", "image": "img/c.png", "text": "", "label": "", "split": "TEST"},
]


def _write(tmp_path: Path, fmt: str, rows=ROWS, name="m") -> Path:
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "csv":
        keys = list(rows[0])
        lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_same_content_in_every_format(tmp_path, fmt):
    m = read_manifest(_write(tmp_path, fmt))
    assert m.ids == ["a", "b", "c"] and m.n_rows == 3 and m.problems == []
    a, b, c = m.records
    assert a.image == tmp_path / "img" / "a.png"  # relative paths resolve against the manifest
    assert b.image is None  # empty cell: modality missing, allowed
    assert c.text is None and c.label is None
    assert a.text == ["a red car"] and a.label == "car"
    assert [r.split for r in m] == ["train", "val", "test"]
    assert m.modalities == ["image", "text"]
    assert [r.row for r in m] == [1, 2, 3]
    assert [r.id for r in m.split("validation")] == ["b"]


def test_roles_and_modalities_constants():
    assert ROLES == ("id", "image", "text", "audio", "video", "label", "split")
    assert MODALITIES == ("image", "text", "audio", "video")


def test_column_mapping_and_extras(tmp_path):
    rows = [{"key": "1", "caption": "x", "picture": "p.png", "note": "n1"},
            {"key": "2", "caption": "y", "picture": "q.png", "note": "n2"}]
    path = _write(tmp_path, "jsonl", rows)
    m = read_manifest(path, columns={"id": "key", "text": "caption", "image": "picture"})
    assert m.ids == ["1", "2"]
    assert m.column_of("text") == "caption" and m.extra_columns == ["note"]
    assert m.records[1].extra == {"note": "n2"} and m.records[1].image == tmp_path / "q.png"


def test_header_names_case_insensitive_and_stripped(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text(" ID , Text \n1,hello\n", encoding="utf-8")
    m = read_manifest(p)
    assert m.columns == {"id": "ID", "text": "Text"} and m.records[0].text == ["hello"]


def test_absolute_and_home_paths(tmp_path):
    p = _write(tmp_path, "jsonl", [{"id": "1", "image": str(tmp_path / "x" / "a.png")},
                                   {"id": "2", "image": "~/b.png"}])
    a, b = read_manifest(p).records
    assert a.image == tmp_path / "x" / "a.png"
    assert b.image == Path("~/b.png").expanduser()


def test_relative_paths_resolve_from_manifest_folder_not_cwd(tmp_path, monkeypatch):
    sub = tmp_path / "data"
    sub.mkdir()
    _write(sub, "csv", [{"id": "1", "audio": "clips/1.wav"}])
    monkeypatch.chdir(tmp_path)
    m = read_manifest("data/m.csv")
    assert m.records[0].audio == sub / "clips" / "1.wav" and m.path == sub / "m.csv"


def test_jsonl_text_list_and_normalisation(tmp_path):
    p = _write(tmp_path, "jsonl", [{"id": 1, "text": ["  one\ttwo ", "", "Cafe\u0301", None]}])
    r = read_manifest(p).records[0]
    assert r.id == "1" and r.text == ["one two", "Caf\u00e9"]


def test_write_manifest_roundtrip_csv_keeps_caption_lists(tmp_path):
    rows = [{"id": "a", "text": ["first, with comma", "second \"quoted\""], "image": "a.png"},
            {"id": "b", "text": "single", "image": ""}]
    for name in ("m.csv", "m.jsonl"):
        out = write_manifest(rows, tmp_path / name)
        m = read_manifest(out)
        assert m.records[0].text == ["first, with comma", "second \"quoted\""]
        assert m.records[1].text == ["single"] and m.records[1].image is None
    assert not list(tmp_path.glob(".*.tmp*"))  # atomic write left no temp file


def test_problems_are_row_level_and_rows_dropped(tmp_path):
    rows = [{"id": "a", "text": "ok", "split": "train"},
            {"id": "", "text": "no id", "split": "train"},
            {"id": "c", "text": "bad split", "split": "holdout"},
            {"id": "a", "text": "dup", "split": "test"},
            {"id": "e", "text": "", "split": ""}]
    m = read_manifest(_write(tmp_path, "csv", rows))
    assert m.ids == ["a"] and m.n_rows == 5
    got = [(p.row, p.column, p.level) for p in m.problems]
    assert got == [(2, "id", "error"), (3, "split", "error"), (4, "id", "error"),
                   (5, None, "error")]
    reasons = [p.reason for p in m.problems]
    assert "empty id" in reasons[0] and "unknown split 'holdout'" in reasons[1]
    assert "first seen in row 1" in reasons[2] and "all modalities missing" in reasons[3]


def test_url_and_non_string_paths_reported(tmp_path):
    p = _write(tmp_path, "jsonl", [{"id": "1", "image": "https://x.org/a.png", "text": "t"},
                                   {"id": "2", "image": 5, "text": "t"},
                                   {"id": "3", "image": "a.png", "text": "t"}])
    m = read_manifest(p)
    assert m.ids == ["3"]
    assert [(q.row, q.column) for q in m.problems] == [(1, "image"), (2, "image")]
    assert "URL" in m.problems[0].reason and "expected a file path" in m.problems[1].reason


def test_jsonl_rows_are_line_numbers_even_with_blank_lines(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"id": "a", "text": "x"}\n\n{"id": "a", "text": "y"}\n', encoding="utf-8")
    m = read_manifest(p)
    assert m.problems[0].row == 3 and m.n_rows == 2
    p.write_text('{"id": "a", "text": "x"}\n\n{"id": "b", "text": oops}\n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_manifest(p)
    assert exc.value.problem.row == 3 and "invalid JSON" in exc.value.reason
    p.write_text('{"id": "a", "text": "x"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataError, match="row 2.*JSON object"):
        read_manifest(p)


def test_csv_rows_blank_lines_and_bom(tmp_path):
    p = tmp_path / "m.csv"
    p.write_bytes("\ufeffid,text\na,x\n\n,,\nb,y\na,z\n".encode("utf-8"))
    m = read_manifest(p)
    assert m.ids == ["a", "b"] and m.columns["id"] == "id"  # BOM stripped from the header
    assert [(q.row, q.column) for q in m.problems] == [(5, "id")]  # blank rows still counted


def test_csv_too_many_cells(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("id,text\na,x\nb,y,extra\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_manifest(p)
    assert exc.value.problem.row == 2 and "3 cells but the header has 2" in exc.value.reason


def test_tsv(tmp_path):
    p = tmp_path / "m.tsv"
    p.write_text("id\ttext\n1\thello, world\n", encoding="utf-8")
    assert read_manifest(p).records[0].text == ["hello, world"]


def test_file_level_errors(tmp_path):
    cases = {
        "m.txt": ("id,text\n1,x\n", "unknown manifest format"),
        "dup.csv": ("id,text,text\n1,x,y\n", "duplicate column name 'text'"),
        "nomod.csv": ("id,label\n1,x\n", "no modality column"),
        "zero.csv": ("", "manifest has no rows"),
        "zero.jsonl": ("\n\n", "manifest has no rows"),
        "bad.parquet": ("not parquet at all", "cannot read Parquet file"),
    }
    for name, (content, phrase) in cases.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(DataError) as exc:
            read_manifest(tmp_path / name)
        assert phrase in exc.value.reason, (name, exc.value.reason)
        assert exc.value.problem.file == str(tmp_path / name)
        assert "\n" not in str(exc.value)
    with pytest.raises(DataError, match="manifest file not found"):
        read_manifest(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="unknown role 'caption'"):
        read_manifest(tmp_path / "nomod.csv", columns={"caption": "label"})


def test_real_openclipart_captions_with_mapping(shared_data):
    path = shared_data / "openclipart" / "captions.jsonl"
    m = read_manifest(path, columns={"text": "title"})
    assert len(m) == m.n_rows > 7000 and m.problems == []
    assert m.modalities == ["image", "text"]
    assert {"description", "keywords", "category"} <= set(m.extra_columns)
    r = m.records[0]
    assert r.image.is_file() and r.image.parent.parent.name == "images"
    assert isinstance(r.extra["keywords"], list) and r.text
