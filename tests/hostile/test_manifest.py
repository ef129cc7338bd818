"""Hostile manifests (issue 11): every bad cell is one row-level problem naming file, row and
column (the value and the limit where one applies), the same in `validate` and `encode`; a file
that cannot be read is one file-level line; nothing crashes, nothing is silently changed.

Cases already covered by tests/data (latin-1 CSV, header-only file, exact duplicate headers,
empty id, duplicate id, URL paths, Parquet NaN) are not repeated here.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.cli.main import main
from polymodal.core.errors import DataError
from polymodal.data.limits import (MAX_CELL_CHARS, MAX_JSON_DEPTH, MAX_PATH_BYTES,
                                   MAX_TEXT_CHARS)
from polymodal.data.manifest import Manifest, Record, read_manifest
from polymodal.data.validate import validate_manifest

pytestmark = pytest.mark.timeout(60)

NO_USER = "~polymodal-no-such-user"
DEEP = f"value nested too deeply (more than the limit of {MAX_JSON_DEPTH} levels of lists / objects)"


def _lines(path: Path, lines: list[str]) -> Path:
    """Write raw lines (JSON text as given: escapes such as \\ud800 stay escapes)."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _jsonl(path: Path, rows: list[dict]) -> Path:
    return _lines(path, [json.dumps(r) for r in rows])


def _where(problems) -> list[tuple]:
    return [(p.row, p.column, p.reason) for p in problems]


def _good(i: int) -> str:
    return json.dumps({"id": f"g{i}", "text": f"good caption {i}"})


class WordEncoder:
    """Bag of hashed words: a real but cheap text encoder for pipeline tests."""

    name, modality, dim, batch_size = "words", "text", 16, 8
    id = "words|16"

    def prepare(self, item):
        return item

    def encode_prepared(self, batch):
        out = torch.zeros(len(batch), 16)
        for i, t in enumerate(batch):
            for w in t.split():
                out[i, sum(map(ord, w)) % 16] += 1
        return out


# ------------------------------------------------------------------ texts
SURROGATE = "text is not valid Unicode: lone surrogate U+D800 at character 5"


def test_lone_surrogate_is_a_row_problem_in_validate(tmp_path):
    m = _lines(tmp_path / "m.jsonl", [_good(1), '{"id": "b", "text": "bad \\ud800 x"}', _good(3)])
    report = validate_manifest(m, check_media=False)
    assert _where(report.problems) == [(2, "text", SURROGATE)]
    assert str(report.problems[0]) == f"{m}, row 2, column 'text': {SURROGATE}"
    assert report.n_rows == 3 and report.n_usable == 2 and report.exit_code == 1


def test_lone_surrogate_row_is_skipped_by_encode_with_the_same_problem(tmp_path):
    from polymodal.features.encode import encode_manifest

    m = _lines(tmp_path / "m.jsonl", [_good(1), '{"id": "b", "text": "bad \\ud800 x"}', _good(3)])
    res = encode_manifest(m, tmp_path / "out", encoders={"text": WordEncoder()},
                          cache_dir=tmp_path / "cache", progress=False)
    assert _where(res.skipped) == _where(validate_manifest(m, check_media=False).problems)
    assert json.loads((tmp_path / "out" / "ids.json").read_text()) == ["g1", "g3"]
    assert np.load(tmp_path / "out" / "text.npy").shape == (2, 16)
    lines = (tmp_path / "out" / "skipped.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"file": str(m), "row": 2, "column": "text",
                                               "reason": SURROGATE, "level": "error"}]
    # a Manifest built in code (not read from a file) gets the same check inside encode
    man = Manifest(path=m, columns={"id": "id", "text": "text"},
                   records=[Record(row=1, id="x", text=["fine"]),
                            Record(row=2, id="y", text=["bad \ud800 x"])])
    res = encode_manifest(man, tmp_path / "out2", encoders={"text": WordEncoder()},
                          cache_dir=tmp_path / "cache", progress=False)
    assert _where(res.skipped) == [(2, "text", SURROGATE)]
    assert res.stats["text"].encoded + res.stats["text"].cached == 1


def test_text_length_limit_is_exact_and_never_truncated(tmp_path):
    at, over = "a" * MAX_TEXT_CHARS, "b" * (MAX_TEXT_CHARS + 1)
    m = _jsonl(tmp_path / "m.jsonl", [{"id": "a", "text": at}, {"id": "b", "text": over},
                                      {"id": "c", "text": ["short", over]}])
    man = read_manifest(m)
    assert man.ids == ["a"] and man.records[0].text == [at]
    assert _where(man.problems) == [
        (2, "text", "text too long (100,001 characters > limit of 100,000)"),
        (3, "text", "text too long (100,001 characters > limit of 100,000) (caption 2 of the "
                    "list)")]


def test_control_characters_refused_but_whitespace_and_c1_kept(tmp_path):
    m = _jsonl(tmp_path / "m.jsonl", [{"id": "a", "text": "bel\x07l"},
                                      {"id": "b", "text": "nul\x00"},
                                      {"id": "c", "text": "tab\there\r\nnew\x0bline"},
                                      {"id": "d", "text": "two\tlines\nok"},
                                      {"id": "e", "text": "Mikol\u00e1\u009a Ale\u009a"}])
    man = read_manifest(m)
    assert _where(man.problems) == [
        (1, "text", "text contains control character U+0007 at character 4"),
        (2, "text", "text contains control character U+0000 at character 4"),
        (3, "text", "text contains control character U+000B at character 14")]
    d, e = man.records
    assert d.text == ["two lines ok"]  # whitespace collapsed, as documented
    assert e.text == ["Mikol\u00e1\u009a Ale\u009a"]  # C1 mojibake as in real OpenClipart data


def test_invisible_only_text_and_id_count_as_empty(tmp_path):
    m = _jsonl(tmp_path / "m.jsonl", [{"id": "a", "text": "\u200b\u200d\ufeff "},
                                      {"id": "\u200b", "text": "visible"},
                                      {"id": "c", "text": ["\u2060", "kept\u200bzwsp"]}])
    man = read_manifest(m)
    assert _where(man.problems) == [
        (1, None, "all modalities missing (no image, text, audio or video)"),
        (2, "id", "empty id")]
    assert man.records[0].text == ["kept\u200bzwsp"]


def test_non_string_captions_are_refused_with_their_json_type(tmp_path):
    m = _lines(tmp_path / "m.jsonl", [
        '{"id": "a", "text": true}', '{"id": "b", "text": 5}', '{"id": "c", "text": {"en": "x"}}',
        '{"id": "d", "text": ["ok", 1]}', '{"id": "e", "text": ["one", "two", null]}'])
    man = read_manifest(m)
    assert _where(man.problems) == [
        (1, "text", "expected text (a string or a list of strings), got boolean true"),
        (2, "text", "expected text (a string or a list of strings), got integer 5"),
        (3, "text", 'expected text (a string or a list of strings), got object {"en": "x"}'),
        (4, "text", "expected a string (caption 2 of the list), got integer 1")]
    assert man.records[0].text == ["one", "two"]  # a list of strings is a multi-caption cell
    # a CSV cell holding a JSON list follows the same rule; other "[" captions stay literal
    c = tmp_path / "m.csv"
    c.write_text('id,text\na,"[""ok"", 1]"\nb,[music] a man sings\n', encoding="utf-8")
    man = read_manifest(c)
    assert _where(man.problems) == [
        (1, "text", "expected a string (caption 2 of the list), got integer 1")]
    assert man.records[0].text == ["[music] a man sings"]


# ------------------------------------------------------------------ ids, splits, JSON values
@pytest.mark.parametrize("raw,reason", [
    ("true", "id must be a string or an integer, got boolean true"),
    ('["l", 1]', 'id must be a string or an integer, got array ["l", 1]'),
    ('{"k": 1}', 'id must be a string or an integer, got object {"k": 1}'),
    ("1.5", "id must be a string or an integer, got number 1.5"),
    ('"a\\u0001b"', "id contains control character U+0001 at character 2"),
], ids=["bool", "array", "object", "fraction", "control-char"])
def test_non_string_ids_are_refused_not_repr(tmp_path, raw, reason):
    m = _lines(tmp_path / "m.jsonl", [_good(1), f'{{"id": {raw}, "text": "x"}}'])
    man = read_manifest(m)
    assert _where(man.problems) == [(2, "id", reason)] and man.ids == ["g1"]


def test_integer_ids_become_strings_and_collide_with_equal_strings(tmp_path):
    m = _lines(tmp_path / "m.jsonl", ['{"id": 7, "text": "x"}', '{"id": 8.0, "text": "y"}',
                                      '{"id": " 7 ", "text": "z"}'])
    man = read_manifest(m)
    assert man.ids == ["7", "8"]
    assert _where(man.problems) == [(3, "id", "duplicate id '7' (first seen in row 1)")]


def test_nan_infinity_and_huge_number_literals(tmp_path):
    m = _lines(tmp_path / "m.jsonl", [
        '{"id": "a", "text": "t", "label": Infinity}', '{"id": -Infinity, "text": "t"}',
        '{"id": "c", "text": "t", "label": 1e999}', '{"id": "d", "text": NaN}',
        '{"id": "e", "text": "t", "n": ' + "9" * 5000 + "}", _good(6),
        '{"id": "f", "text": "t", "split": true}'])
    man = read_manifest(m)
    got = _where(man.problems)
    assert got[:5] == [(1, "label", "Infinity is not a usable label value"),
                       (2, "id", "-Infinity is not a usable id value"),
                       (3, "label", "Infinity is not a usable label value"),
                       (4, "text", "NaN value; treated as missing"),
                       (4, None, "all modalities missing (no image, text, audio or video)")]
    assert got[5][:2] == (5, None)
    assert got[5][2].startswith("unusable JSON value: Exceeds the limit (4300 digits)")
    assert got[6] == (7, "split", "unknown split boolean true; use train, val or test")
    assert man.ids == ["g6"] and man.n_rows == 7


def test_duplicate_keys_in_a_jsonl_object_are_row_problems(tmp_path):
    m = _lines(tmp_path / "m.jsonl", [
        _good(1), '{"id": "b", "text": "x", "text": "y"}',
        '{"id": "c", "text": "z", "meta": {"k": 1, "k": 2}}', _good(4)])
    man = read_manifest(m)
    assert _where(man.problems) == [
        (2, "text", "duplicate key 'text' in the JSON object (which value is meant?)"),
        (3, "meta", "duplicate key 'k' in a nested JSON object")]
    assert man.ids == ["g1", "g4"] and man.n_rows == 4


def test_deeply_nested_json_is_a_row_problem_with_the_limit(tmp_path):
    over = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    at = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    huge = "[" * 100_000 + "]" * 100_000  # RecursionError inside json.loads
    m = _lines(tmp_path / "m.jsonl", [
        _good(1), f'{{"id": "b", "text": "x", "meta": {over}}}',
        f'{{"id": "c", "text": "x", "meta": {huge}}}', f'{{"id": "d", "text": "x", "meta": {at}}}'])
    man = read_manifest(m)
    assert _where(man.problems) == [
        (2, "meta", DEEP),
        (3, None, f"JSON nested too deeply (more than the limit of {MAX_JSON_DEPTH} levels of "
                  "lists / objects)")]
    assert man.ids == ["g1", "d"] and man.n_rows == 4
    # the same inside a CSV text cell holding a JSON list
    c = tmp_path / "m.csv"
    c.write_text(f"id,text\na,ok\nb,{huge}\nc,{over}\n", encoding="utf-8")
    man = read_manifest(c)
    assert _where(man.problems) == [(2, "text", DEEP), (3, "text", DEEP)] and man.ids == ["a"]


def test_every_line_unusable_names_the_real_cause(tmp_path):
    m = _lines(tmp_path / "m.jsonl", ['{"id": "a", "id": "b", "text": "x"}'] * 2)
    with pytest.raises(DataError) as exc:
        read_manifest(m)
    assert str(exc.value) == (f"{m}, row 1, column 'id': no usable row: duplicate key 'id' in "
                              "the JSON object (which value is meant?) (and 1 more rows)")


# ------------------------------------------------------------------ media paths
@pytest.mark.parametrize("value,reason", [
    ("a\x00b.png", "path contains a NUL byte at character 2: 'a\\u0000b.png'"),
    (f"{NO_USER}/x.png", "cannot expand '~polymodal-no-such-user' in "
                         "'~polymodal-no-such-user/x.png': no such user (or no home directory)"),
    ("dir/" + "n" * 300 + ".png", "file or folder name too long (304 bytes > limit of 255): '"
                                  + "n" * 60 + "…'"),
    ("a\nb.png", "path contains control character U+000A at character 2: 'a\\u000ab.png'"),
    (["a.png"], 'expected a file path (a string), got array ["a.png"]'),
    ("x\udc80.png", "path is not valid Unicode: lone surrogate U+DC80 at character 2"),
], ids=["nul", "no-such-user", "name-too-long", "newline", "array", "surrogate"])
def test_bad_media_paths_are_row_problems(tmp_path, value, reason):
    m = _jsonl(tmp_path / "m.jsonl", [{"id": "a", "image": "a.png", "text": "t"},
                                      {"id": "b", "image": value, "text": "t"}])
    man = read_manifest(m)
    assert _where(man.problems) == [(2, "image", reason)] and man.ids == ["a"]
    report = validate_manifest(m, check_media=False)  # a.png is missing: row 1 fails too
    assert _where(report.problems) == [(1, "image", "a.png: file not found"),
                                       (2, "image", reason)]


def test_path_longer_than_path_max_is_a_row_problem(tmp_path):
    deep = "/".join(["d" * 200] * 25) + "/x.wav"  # 25 folders of 200 bytes: ENAMETOOLONG
    m = _jsonl(tmp_path / "m.jsonl", [{"id": "a", "audio": deep}])
    n = len(str(m.resolve().parent / deep).encode())
    report = validate_manifest(m, check_media=False)
    assert _where(report.problems) == [
        (1, "audio", f"path too long ({n:,} bytes > limit of {MAX_PATH_BYTES:,}): '"
                     + deep[:60] + "…'")]


# ------------------------------------------------------------------ headers and file level
def test_case_insensitive_duplicate_headers_are_refused(tmp_path):
    c = tmp_path / "m.csv"
    c.write_text("id,text,TEXT\na,lower,upper\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_manifest(c)
    assert str(exc.value) == (f"{c}, column 'TEXT': columns 'text' and 'TEXT' both play the "
                              "role 'text' (column names are case-insensitive); rename or drop "
                              "one, or choose one with --column text=NAME")
    man = read_manifest(c, columns={"text": "TEXT"})  # an explicit choice is fine
    assert man.records[0].text == ["upper"] and man.records[0].extra == {"text": "lower"}
    j = _lines(tmp_path / "m.jsonl", ['{"id": "a", "Id": "b", "text": "x"}'])
    with pytest.raises(DataError, match="columns 'id' and 'Id' both play the role 'id'"):
        read_manifest(j)
    s = tmp_path / "s.csv"
    s.write_text("id, text,text \na,x,y\n", encoding="utf-8")
    with pytest.raises(DataError, match="duplicate column name 'text' in the header"):
        read_manifest(s)


def test_csv_cells_over_the_csv_module_default_are_read_and_over_the_limit_refused(tmp_path):
    default = csv.field_size_limit()
    c = tmp_path / "m.csv"
    big, too_big = "n" * 200_000, "x" * (MAX_CELL_CHARS + 1)
    c.write_text(f"id,text,note\na,one,{big}\nb,two,{too_big}\nc,three,\n", encoding="utf-8")
    man = read_manifest(c)
    assert man.ids == ["a", "c"] and man.records[0].extra["note"] == big
    assert _where(man.problems) == [
        (2, "note", "cell too long (10,000,001 characters > limit of 10,000,000)")]
    assert csv.field_size_limit() == default  # the process-wide limit is restored


def test_csv_structure_bom_crlf_cr_and_unclosed_quote(tmp_path):
    c = tmp_path / "m.csv"
    c.write_bytes(b"\xef\xbb\xbfid,Text\r\na,\"two\r\nlines\"\r\nb,plain\r\n")
    man = read_manifest(c)
    assert man.columns["id"] == "id" and [r.text for r in man] == [["two lines"], ["plain"]]
    c.write_bytes(b"id,text\ra,old mac\rb,line ends\r")
    assert [r.text for r in read_manifest(c)] == [["old mac"], ["line ends"]]
    c.write_text('id,text\na,"never closed\nb,ok\nc,ok\n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        read_manifest(c)
    assert str(exc.value) == (f"{c}, row 1: malformed CSV: a quoted cell starting in this row "
                              "is never closed")
    c.write_text('id,text\na,ok\nb,"Hello" she said\n', encoding="utf-8")  # was: Hello she said
    with pytest.raises(DataError) as exc:
        read_manifest(c)
    assert str(exc.value) == (f"{c}, row 2: malformed CSV: ',' expected after '\"' (a quote "
                              "inside a quoted cell must be doubled: \"\")")


def test_file_level_encodings_and_empty_files(tmp_path):
    for name in ("u16.csv", "u16.jsonl"):
        p = tmp_path / name
        p.write_bytes("id,text\na,x\n".encode("utf-16"))
        with pytest.raises(DataError) as exc:
            read_manifest(p)
        assert str(exc.value) == f"{p}: file is UTF-16 encoded; re-save it as UTF-8"
    j = tmp_path / "bad.jsonl"
    j.write_bytes(b'{"id": "a", "text": "x"}\n{"id": "b\xff", "text": "y"}\n')
    with pytest.raises(DataError) as exc:
        read_manifest(j)
    assert str(exc.value) == (f"{j}, row 2: not valid UTF-8 (byte 0xff at byte 10 of the "
                              "line); re-save the file as UTF-8")
    e = tmp_path / "empty.jsonl"
    e.write_bytes(b"")
    with pytest.raises(DataError) as exc:
        read_manifest(e)
    assert str(exc.value) == f"{e}: manifest has no rows (the file is empty)"
    arr = _lines(tmp_path / "arr.jsonl", [_good(1), "[1, 2]"])
    with pytest.raises(DataError) as exc:
        read_manifest(arr)
    assert str(exc.value) == f"{arr}, row 2: each line must be a JSON object, got array"


def test_manifest_path_itself_hostile(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    cases = {f"{NO_USER}/m.csv": "cannot expand '~' in the manifest path: no such user (or no "
                                 "home directory)",
             str(tmp_path / ("n" * 300 + ".csv")): "cannot open the manifest: File name too long",
             str(tmp_path / "dir.csv"): "manifest is a folder, not a file",
             "m\x00.csv": "bad manifest path: the manifest path contains a NUL byte"}
    for path, reason in cases.items():
        with pytest.raises(DataError) as exc:
            read_manifest(path)
        assert exc.value.reason == reason and "\n" not in str(exc.value)
        report = validate_manifest(path)  # validate: a one-problem report, never a traceback
        assert [p.reason for p in report.problems] == [reason] and report.exit_code == 1


def test_parquet_non_string_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "m.parquet"
    pq.write_table(pa.table({"id": pa.array([1.0, 2.0, 3.5]), "text": pa.array(["a", None, "c"]),
                             "caption": pa.array([1, 2, 3]),
                             "image": pa.array([None, b"\x89PNG", None], pa.binary())}), p)
    man = read_manifest(p)
    assert man.ids == ["1"]
    assert _where(man.problems) == [
        (2, "image", "expected a file path (a string), got bytes <4 bytes>"),
        (3, "id", "id must be a string or an integer, got number 3.5")]
    man = read_manifest(p, columns={"text": "caption"})
    assert _where(man.problems)[0] == (
        1, "caption", "expected text (a string or a list of strings), got integer 1")


# ------------------------------------------------------------------ the CLI
def test_cli_validate_prints_the_row_and_exits_1(tmp_path, capsys):
    m = _lines(tmp_path / "m.jsonl", [_good(1), '{"id": "b", "text": "bad \\ud800 x"}'])
    assert main(["validate", str(m), "--no-media", "-q"]) == 1
    out, err = capsys.readouterr()
    assert f"2   | text   | error | {SURROGATE}" in out.splitlines()
    assert "2 rows, 1 usable (text 1); 1 error, 0 warnings" in out and err == ""


def test_cli_encode_file_level_error_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    c = tmp_path / "m.csv"
    c.write_text("id,text,TEXT\na,x,y\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["encode", str(c), "--out", str(out), "-q"]) == 2
    std, err = capsys.readouterr()
    assert err == (f"error: {c}, column 'TEXT': columns 'text' and 'TEXT' both play the role "
                   "'text' (column names are case-insensitive); rename or drop one, or choose "
                   "one with --column text=NAME\n")
    assert std == "" and not out.exists()


def test_cli_encode_skips_bad_paths_and_reports_each_row(tmp_path, capsys):
    import soundfile as sf

    t = np.arange(4000) / 8000
    sf.write(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    m = _jsonl(tmp_path / "m.jsonl", [{"id": "a", "audio": "a.wav"},
                                      {"id": "b", "audio": "b\x00.wav"},
                                      {"id": "c", "audio": f"{NO_USER}/c.wav"}])
    out = tmp_path / "out"
    assert main(["encode", str(m), "--out", str(out), "-q", "--cache", str(tmp_path / "c")]) == 0
    std = capsys.readouterr().out
    lines = std.splitlines()
    assert f"skipped: 2 (details in {out / 'skipped.jsonl'})" in lines
    assert "  row 2  audio: path contains a NUL byte at character 2: 'b\\u0000.wav'" in lines
    assert "  row 3  audio: cannot expand '~polymodal-no-such-user' in " \
           "'~polymodal-no-such-user/c.wav': no such user (or no home directory)" in lines
    rows = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(r["row"], r["column"]) for r in rows] == [(2, "audio"), (3, "audio")]
    assert json.loads((out / "ids.json").read_text()) == ["a"]
    assert np.load(out / "audio.npy").shape[0] == 1


def test_cli_subprocess_never_prints_a_traceback(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    m = _lines(tmp_path / "m.jsonl", [f'{{"id": "a", "text": {deep}}}'])
    reason = (f"{m}, row 1: no usable row: JSON nested too deeply (more than the limit of "
              f"{MAX_JSON_DEPTH} levels of lists / objects)")

    def run(*args):
        res = subprocess.run([sys.executable, "-m", "polymodal", *args], capture_output=True,
                             text=True, timeout=120)
        assert "Traceback" not in res.stdout + res.stderr, res.stderr
        return res

    res = run("validate", str(m), "-q")
    assert res.returncode == 1 and f"1   | -      | error | {reason.split(': ', 1)[1]}" \
        in res.stdout.splitlines()
    res = run("encode", str(m), "--out", str(tmp_path / "o"), "-q")
    assert (res.returncode, res.stderr, res.stdout) == (2, f"error: {reason}\n", "")
    assert not (tmp_path / "o").exists()
