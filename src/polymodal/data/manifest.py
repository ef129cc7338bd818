"""Manifest reading: CSV, JSONL or Parquet files whose columns play roles.

Roles: ``id``, ``image``, ``text``, ``audio``, ``label``, ``split``. A column named like a role
plays it; ``columns={"text": "caption"}`` maps another column to a role. Relative media paths
resolve against the manifest's folder. Empty cells mean "modality missing for this row".
Rows are numbered from 1 (header excluded) in every message.
"""
from __future__ import annotations

import csv
import io
import json
import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from polymodal.core.errors import DataError, Problem

ROLES = ("id", "image", "text", "audio", "label", "split")
MODALITIES = ("image", "text", "audio")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class Record:
    """One manifest row. Media paths are absolute; ``text`` holds one or more captions."""

    row: int
    id: str
    image: Path | None = None
    audio: Path | None = None
    text: list[str] | None = None
    label: Any = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, modality: str) -> Any:
        """The item of one modality (path or list of texts), or None when missing."""
        return getattr(self, modality)


@dataclass
class Manifest:
    """Parsed manifest: usable records plus the problems found while reading."""

    path: Path
    records: list[Record]
    columns: dict[str, str]  # role -> column name in the file
    problems: list[Problem] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    n_rows: int = 0  # data rows in the file (blank lines excluded), usable or not

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def modalities(self) -> list[str]:
        """Modalities that have a column in this manifest."""
        return [m for m in MODALITIES if m in self.columns]

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def split(self, name: str | None) -> list[Record]:
        """Records of one split (``None``: all records)."""
        if name is None:
            return list(self.records)
        name = SPLIT_ALIASES.get(name.lower(), name)
        return [r for r in self.records if r.split == name]

    def column_of(self, role: str) -> str:
        """The file's column name that plays ``role``."""
        return self.columns.get(role, role)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and not value.strip():
        return True
    if isinstance(value, (list, tuple)) and not value:
        return True
    return False


def _csv_rows(path: Path, fmt: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at line {line}); "
                        "re-save the file as UTF-8", file=str(path),
                        row=max(line - 1, 0) or None) from None
    reader = csv.reader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ",")
    n = 0
    try:
        header = [h.strip() for h in next(reader, [])]
        dup = sorted({h for h in header if header.count(h) > 1})
        if dup:
            raise DataError(f"duplicate column name '{dup[0]}' in the header", file=str(path),
                            column=dup[0])
        rows = []
        for n, cells in enumerate(reader, 1):
            if not cells or not any(c.strip() for c in cells):
                continue  # blank line: counted as a row, skipped
            if len(cells) > len(header):
                raise DataError(f"row has {len(cells)} cells but the header has {len(header)}",
                                file=str(path), row=n)
            rows.append((n, dict(zip(header, cells))))
    except csv.Error as e:
        raise DataError(f"malformed CSV: {e}", file=str(path), row=n + 1) from None
    return header, rows


def _jsonl_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    header: list[str] = []
    rows = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            try:
                obj = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                raise DataError("not valid UTF-8", file=str(path), row=lineno) from None
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg} (char {e.pos})", file=str(path),
                                row=lineno) from None
            if not isinstance(obj, dict):
                raise DataError("each line must be a JSON object", file=str(path), row=lineno)
            for k in obj:
                if k not in header:
                    header.append(k)
            rows.append((lineno, obj))
    return header, rows


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Header (column order) and the raw rows as (1-based data row number, dict). Blank lines
    count as (skipped) rows so that row N of a JSONL file is line N and of a CSV file line N+1
    (unless cells span lines)."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"unknown manifest format '{path.suffix}'; use one of "
                        f"{', '.join(sorted(FORMATS))}", file=str(path))
    if not path.is_file():
        raise DataError("manifest file not found", file=str(path))
    if fmt in ("csv", "tsv"):
        return _csv_rows(path, fmt)
    if fmt == "jsonl":
        return _jsonl_rows(path)
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises many types for corrupt files
        msg = " ".join(str(e).split())[:300] or type(e).__name__
        raise DataError(f"cannot read Parquet file: {msg}", file=str(path)) from None
    names = list(table.column_names)
    dup = sorted({h for h in names if names.count(h) > 1})
    if dup:
        raise DataError(f"duplicate column name '{dup[0]}'", file=str(path), column=dup[0])
    return names, list(enumerate(table.to_pylist(), 1))


def _resolve_columns(header: list[str], mapping: dict[str, str], path: Path) -> dict[str, str]:
    bad = [r for r in mapping if r not in ROLES]
    if bad:
        raise DataError(f"unknown role '{bad[0]}' in column mapping; roles are {', '.join(ROLES)}",
                        file=str(path))
    columns: dict[str, str] = {}
    lower = {h.lower(): h for h in header}
    for role in ROLES:
        if role in mapping:
            if mapping[role] not in header:
                raise DataError(f"column '{mapping[role]}' (mapped to role '{role}') is not in the "
                                f"manifest; its columns are: {', '.join(header) or '(none)'}",
                                file=str(path), column=mapping[role])
            columns[role] = mapping[role]
        elif role in lower:
            columns[role] = lower[role]
    if not any(m in columns for m in MODALITIES):
        raise DataError(f"no modality column: expected one of {', '.join(MODALITIES)} (or map one "
                        f"with --column text=NAME); found columns: {', '.join(header) or '(none)'}",
                        file=str(path))
    return columns


def _texts(value: Any) -> list[str] | None:
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:  # a CSV cell holding a JSON list of captions (what write_manifest writes)
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            value = parsed
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if _is_missing(item):
            continue
        s = " ".join(unicodedata.normalize("NFC", str(item)).split())
        if s:
            out.append(s)
    return out or None


def _media_path(value: Any, root: Path) -> Path | str:
    """The absolute path of a media cell, or the reason it is not a usable path."""
    if not isinstance(value, str):
        return f"expected a file path, got {value!r}"
    v = value.strip()
    if "://" in v:
        return f"expected a local file path, got a URL '{v}'; download the files first"
    p = Path(v).expanduser()
    return p if p.is_absolute() else root / p


def _nan_problems(fname: str, n: int, raw: dict[str, Any], cols: dict[str, str]
                  ) -> tuple[list[Problem], bool]:
    out, bad = [], False
    for role, col in cols.items():
        v = raw.get(col)
        if isinstance(v, float) and math.isnan(v):
            level = "error" if role == "id" else "warning"
            out.append(Problem(fname, n, col, "NaN value" + (
                " in the id column" if level == "error" else "; treated as missing"), level))
            bad = bad or level == "error"
    return out, bad


def read_manifest(path: str | Path, columns: dict[str, str] | None = None) -> Manifest:
    """Read and check a manifest. File-level problems raise `DataError`; row-level problems are
    collected in ``manifest.problems`` and the row is dropped (errors) or kept (warnings)."""
    path = Path(path).expanduser().resolve()
    header, raw_rows = _read_rows(path)
    if not raw_rows:
        raise DataError("manifest has no rows" + (f" (header: {', '.join(header)})" if header
                        else " (the file is empty)"), file=str(path))
    cols = _resolve_columns(header, dict(columns or {}), path)
    used = set(cols.values())
    extra_cols = [h for h in header if h not in used]
    problems: list[Problem] = []
    records: list[Record] = []
    seen: dict[str, int] = {}
    fname = str(path)
    for n, raw in raw_rows:
        def cell(role: str) -> Any:
            return raw.get(cols[role]) if role in cols else None

        nan_problems, bad = _nan_problems(fname, n, raw, cols)
        problems += nan_problems
        if bad:
            continue
        rid = cell("id")
        if _is_missing(rid):
            if "id" in cols:
                problems.append(Problem(fname, n, cols["id"], "empty id"))
                continue
            rid = str(n)
        rid = str(rid).strip()
        if rid in seen:
            problems.append(Problem(fname, n, cols.get("id", "id"),
                                    f"duplicate id '{rid}' (first seen in row {seen[rid]})"))
            continue
        seen[rid] = n
        rec = Record(row=n, id=rid)
        for m in ("image", "audio"):
            v = cell(m)
            if not _is_missing(v):
                p = _media_path(v, path.parent)
                if isinstance(p, str):
                    problems.append(Problem(fname, n, cols[m], p))
                    bad = True
                else:
                    setattr(rec, m, p)
        if "text" in cols:
            rec.text = _texts(cell("text"))
        lab = cell("label")
        rec.label = None if _is_missing(lab) else (lab.strip() if isinstance(lab, str) else lab)
        sp = cell("split")
        if not _is_missing(sp):
            norm = SPLIT_ALIASES.get(str(sp).strip().lower())
            if norm is None:
                problems.append(Problem(fname, n, cols["split"], f"unknown split '{sp}'; use "
                                        "train, val or test"))
                bad = True
            rec.split = norm
        if bad:
            continue
        if rec.image is None and rec.audio is None and rec.text is None:
            problems.append(Problem(fname, n, None, "all modalities missing (no image, text or "
                                    "audio)"))
            continue
        rec.extra = {k: raw.get(k) for k in extra_cols}
        records.append(rec)
    return Manifest(path=path, records=records, columns=cols, problems=problems,
                    extra_columns=extra_cols, n_rows=len(raw_rows))


def write_manifest(records: list[dict[str, Any]], path: str | Path) -> Path:
    """Write rows (dicts) atomically: CSV when ``path`` ends in .csv (list cells become JSON
    lists, which `read_manifest` reads back as lists), JSONL otherwise. Media paths should be
    relative to the manifest's folder."""
    from polymodal.core.atomic import atomic_write_text

    path = Path(path)
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        keys: list[str] = []
        for r in records:
            keys += [k for k in r if k not in keys]
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for r in records:
            w.writerow({k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (list, tuple))
                            else v) for k, v in r.items()})
        atomic_write_text(path, buf.getvalue())
    else:
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                        for r in records))
    return path
