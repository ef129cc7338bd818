"""Reading manifest files (CSV / TSV, JSONL, Parquet) into raw rows, before roles are applied.

File-level problems (not UTF-8, UTF-16, malformed CSV, a JSONL line that is not JSON or not an
object, an unreadable Parquet file) raise `DataError`; JSONL lines that parse but cannot be used
(nested deeper than `MAX_JSON_DEPTH`, a repeated key, a number Python cannot convert) are
row-level problems, so the other rows stay usable.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import threading
from pathlib import Path
from typing import Any

from polymodal.core.errors import DataError, Problem
from polymodal.data.cells import json_type, show, text_problem
from polymodal.data.limits import MAX_JSON_DEPTH

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}
_CSV_LOCK = threading.Lock()  # csv.field_size_limit is process-wide: one CSV read at a time
Rows = list[tuple[int, dict[str, Any]]]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read the manifest: {e.strerror or e}", file=str(path)) from None


def _utf16(head: bytes, path: Path) -> None:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError("file is UTF-16 encoded; re-save it as UTF-8", file=str(path))


def _csv_rows(path: Path, fmt: str) -> tuple[list[str], Rows]:
    raw = _read_bytes(path)
    _utf16(raw, path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at line {line}); "
                        "re-save the file as UTF-8", file=str(path),
                        row=max(line - 1, 0) or None) from None
    # strict: an unclosed quote is an error, not a cell that swallows the rest of the file.
    # The field limit is lifted for this read (no cell is longer than the file); cells over
    # MAX_CELL_CHARS are refused per row by read_manifest, the other rows stay usable.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True,
                        delimiter="\t" if fmt == "tsv" else ",")
    n = 0
    with _CSV_LOCK:
        old_limit = csv.field_size_limit(max(len(text) + 1, csv.field_size_limit()))
        try:
            header = [h.strip() for h in next(reader, [])]
            dup = sorted({h for h in header if header.count(h) > 1})
            if dup:
                raise DataError(f"duplicate column name '{show(dup[0])}' in the header",
                                file=str(path), column=dup[0])
            rows = []
            for n, cells in enumerate(reader, 1):
                if not cells or not any(c.strip() for c in cells):
                    continue  # blank line: counted as a row, skipped
                if len(cells) > len(header):
                    raise DataError(f"row has {len(cells)} cells but the header has "
                                    f"{len(header)} (an unquoted delimiter in a cell?)",
                                    file=str(path), row=n)
                rows.append((n, dict(zip(header, cells))))
        except csv.Error as e:
            msg = str(e)
            if "unexpected end of data" in msg:
                msg = "a quoted cell starting in this row is never closed"
            elif "expected after" in msg:
                msg += " (a quote inside a quoted cell must be doubled: \"\")"
            raise DataError(f"malformed CSV: {msg}", file=str(path), row=n + 1) from None
        finally:
            csv.field_size_limit(old_limit)
    return header, rows


def _duplicate_keys(found: list[tuple[str, dict]]):
    """A json ``object_pairs_hook`` that records (key, object) for objects with a repeated key
    (json.loads would silently keep the last value)."""
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) < len(pairs):
            seen: set[str] = set()
            found.append((next(k for k, _ in pairs if k in seen or seen.add(k)), obj))
        return obj
    return hook


def _holds(value: Any, target: dict) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if v is target:
            return True
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def _json_line(line: str, lineno: int, path: Path) -> dict | Problem:
    """One JSONL line as an object, or the row-level problem that makes it unusable. Syntax
    errors and non-objects raise (the file is not JSONL)."""
    fname = str(path)
    found: list[tuple[str, dict]] = []
    try:
        obj = json.loads(line, object_pairs_hook=_duplicate_keys(found))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (char {e.pos})", file=fname, row=lineno) from None
    except RecursionError:
        return Problem(fname, lineno, None, "JSON nested too deeply (more than the limit of "
                       f"{MAX_JSON_DEPTH} levels of lists / objects)")
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        return Problem(fname, lineno, None, f"unusable JSON value: {show(str(e), 120)}")
    if not isinstance(obj, dict):
        raise DataError(f"each line must be a JSON object, got {json_type(obj)}", file=fname,
                        row=lineno)
    for key, holder in sorted(found, key=lambda f: f[1] is not obj):  # the row's own keys first
        if holder is obj:
            return Problem(fname, lineno, key, f"duplicate key '{show(key)}' in the JSON object "
                           "(which value is meant?)")
        col = next((k for k, v in obj.items() if _holds(v, holder)), None)
        return Problem(fname, lineno, col, f"duplicate key '{show(key)}' in a nested JSON object")
    for key in obj:
        reason = text_problem(key)
        if reason:
            return Problem(fname, lineno, show(key), reason.replace("text", "column name", 1))
    return obj


def _jsonl_rows(path: Path) -> tuple[list[str], Rows, list[Problem]]:
    header: dict[str, None] = {}
    rows, problems = [], []
    try:
        fh = path.open("rb")
    except OSError as e:
        raise DataError(f"cannot read the manifest: {e.strerror or e}", file=str(path)) from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            if lineno == 1:
                _utf16(line, path)
                if line.startswith(codecs.BOM_UTF8):
                    line = line[3:]
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"not valid UTF-8 (byte 0x{line[e.start]:02x} at byte "
                                f"{e.start + 1} of the line); re-save the file as UTF-8",
                                file=str(path), row=lineno) from None
            obj = _json_line(text, lineno, path)
            if isinstance(obj, Problem):
                problems.append(obj)
                continue
            header.update(dict.fromkeys(obj))
            rows.append((lineno, obj))
    return list(header), rows, problems


def _parquet_rows(path: Path) -> tuple[list[str], Rows]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        names = list(table.column_names)
        dup = sorted({h for h in names if names.count(h) > 1})
        if dup:
            raise DataError(f"duplicate column name '{show(dup[0])}'", file=str(path),
                            column=dup[0])
        return names, list(enumerate(table.to_pylist(), 1))
    except DataError:
        raise
    except Exception as e:  # pyarrow raises many types for corrupt files
        msg = " ".join(str(e).split())[:300] or type(e).__name__
        raise DataError(f"cannot read Parquet file: {show(msg, 300)}", file=str(path)) from None


def read_table(path: Path) -> tuple[list[str], Rows, list[Problem]]:
    """Header (column order), raw rows as (1-based data row number, dict) and the rows that
    could not be parsed at all (row-level problems). Blank lines count as (skipped) rows so
    that row N of a JSONL file is line N and of a CSV file line N+1 (unless cells span
    lines)."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"unknown manifest format '{show(path.suffix)}'; use one of "
                        f"{', '.join(sorted(FORMATS))}", file=str(path))
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except (OSError, ValueError) as e:  # ENAMETOOLONG, ELOOP, ...
        raise DataError(f"cannot open the manifest: {getattr(e, 'strerror', None) or e}",
                        file=show(str(path), 300)) from None
    if not is_file:
        raise DataError("manifest is a folder, not a file" if is_dir else
                        "manifest file not found", file=str(path))
    if fmt in ("csv", "tsv"):
        return (*_csv_rows(path, fmt), [])
    if fmt == "jsonl":
        return _jsonl_rows(path)
    return (*_parquet_rows(path), [])


def read_rows(path: Path) -> tuple[list[str], Rows]:
    """`read_table` without the unparsable rows."""
    header, rows, _ = read_table(path)
    return header, rows
