"""Manifest reading: CSV, JSONL or Parquet files whose columns play roles.

Roles: ``id``, ``image``, ``text``, ``audio``, ``video``, ``label``, ``split``. A column named like a role
plays it; ``columns={"text": "caption"}`` maps another column to a role. Relative media paths
resolve against the manifest's folder. Empty cells mean "modality missing for this row".
Rows are numbered from 1 (header excluded) in every message.

File formats are read by `polymodal.data.readers`; every cell is checked by
`polymodal.data.cells` (ids, texts, paths, nesting, sizes, against `polymodal.data.limits`).
A bad cell is a row-level `Problem` naming row and column, and the row is dropped, so
`validate` reports and `encode` skips exactly the same rows. Values are never coerced into
Python reprs: an id is a string or an integer, a text is a string or a list of strings.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from polymodal.core.errors import DataError, Problem
from polymodal.data.cells import (CellError, check_cell_size, check_depth, json_type, media_path,
                                  row_id, show, texts)
from polymodal.data.readers import read_table

ROLES = ("id", "image", "text", "audio", "video", "label", "split")
MODALITIES = ("image", "text", "audio", "video")
MEDIA = ("image", "audio", "video")  # modalities whose cells are file paths
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "dev": "val", "test": "test", "testing": "test"}


@dataclass
class Record:
    """One manifest row. Media paths are absolute; ``text`` holds one or more captions."""

    row: int
    id: str
    image: Path | None = None
    audio: Path | None = None
    video: Path | None = None
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


def _resolve_columns(header: list[str], mapping: dict[str, str], path: Path) -> dict[str, str]:
    bad = [r for r in mapping if r not in ROLES]
    if bad:
        raise DataError(f"unknown role '{show(bad[0])}' in column mapping; roles are "
                        f"{', '.join(ROLES)}", file=str(path))
    columns: dict[str, str] = {}
    mapped = set(mapping.values())
    for role in ROLES:
        if role in mapping:
            if mapping[role] not in header:
                raise DataError(f"column '{show(mapping[role])}' (mapped to role '{role}') is not "
                                f"in the manifest; its columns are: "
                                f"{', '.join(map(show, header)) or '(none)'}",
                                file=str(path), column=mapping[role])
            columns[role] = mapping[role]
            continue
        hits = [h for h in header if h.strip().lower() == role and h not in mapped]
        if len(hits) > 1:  # "text" and "TEXT": refuse rather than let one silently win
            names = " and ".join(f"'{show(h)}'" for h in hits)
            raise DataError(f"columns {names} both play the role '{role}' (column names are "
                            f"case-insensitive); rename or drop one, or choose one with "
                            f"--column {role}=NAME", file=str(path), column=hits[1])
        if hits:
            columns[role] = hits[0]
    if not any(m in columns for m in MODALITIES):
        raise DataError(f"no modality column: expected one of {', '.join(MODALITIES)} (or map one "
                        f"with --column text=NAME); found columns: "
                        f"{', '.join(map(show, header)) or '(none)'}", file=str(path))
    return columns


def _manifest_path(path: str | Path) -> Path:
    s = str(path)
    try:
        if "\x00" in s:
            raise ValueError("the manifest path contains a NUL byte")
        return Path(path).expanduser().resolve()
    except RuntimeError:  # "~nosuchuser/m.csv"
        reason = "cannot expand '~' in the manifest path: no such user (or no home directory)"
    except (OSError, ValueError) as e:
        reason = f"bad manifest path: {getattr(e, 'strerror', None) or e}"
    raise DataError(reason, file=show(s, 300)) from None


def _cell_problems(fname: str, n: int, raw: dict[str, Any], cols: dict[str, str]
                   ) -> tuple[list[Problem], bool]:
    """Problems of whole cells before any role reads them: too long, nested too deeply, NaN
    (a warning; an error in the id column) or infinite."""
    out, bad = [], False
    for col, v in raw.items():
        try:
            check_cell_size(v)
            check_depth(v)
        except CellError as e:
            out.append(Problem(fname, n, col, str(e)))
            bad = True
    if bad:
        return out, True
    for role, col in cols.items():
        v = raw.get(col)
        if isinstance(v, float) and math.isnan(v):
            level = "error" if role == "id" else "warning"
            out.append(Problem(fname, n, col, "NaN value" + (
                " in the id column" if level == "error" else "; treated as missing"), level))
            bad = bad or level == "error"
        elif isinstance(v, float) and math.isinf(v):
            out.append(Problem(fname, n, col, f"{show(v)} is not a usable {role} value"))
            bad = True
    return out, bad


def _read_row(fname: str, n: int, raw: dict[str, Any], cols: dict[str, str], root: Path,
              seen: dict[str, int], problems: list[Problem]) -> Record | None:
    """One checked record, or None (its problems appended) when the row is unusable."""
    def cell(role: str) -> Any:
        return raw.get(cols[role]) if role in cols else None

    def fail(role: str | None, reason: str) -> None:
        problems.append(Problem(fname, n, cols.get(role) if role else None, reason))

    cell_problems, bad = _cell_problems(fname, n, raw, cols)
    problems += cell_problems
    if bad:
        return None
    try:
        rid = None if _is_missing(cell("id")) else row_id(cell("id"))
    except CellError as e:
        return fail("id", str(e))
    if rid is None:
        if "id" in cols:
            return fail("id", "empty id")
        rid = str(n)
    if rid in seen:
        problems.append(Problem(fname, n, cols.get("id", "id"),
                                f"duplicate id '{show(rid)}' (first seen in row {seen[rid]})"))
        return None
    seen[rid] = n
    rec = Record(row=n, id=rid)
    for m in MEDIA:
        v = cell(m)
        if not _is_missing(v):
            try:
                setattr(rec, m, media_path(v, root))
            except CellError as e:
                fail(m, str(e))
                bad = True
    if "text" in cols:
        try:
            rec.text = texts(cell("text"))
        except CellError as e:
            fail("text", str(e))
            bad = True
    lab = cell("label")
    rec.label = None if _is_missing(lab) else (lab.strip() if isinstance(lab, str) else lab)
    sp = cell("split")
    if not _is_missing(sp):
        norm = SPLIT_ALIASES.get(sp.strip().lower()) if isinstance(sp, str) else None
        if norm is None:
            what = f"'{show(sp)}'" if isinstance(sp, str) else f"{json_type(sp)} {show(sp)}"
            fail("split", f"unknown split {what}; use train, val or test")
            bad = True
        rec.split = norm
    if bad:
        return None
    if rec.image is None and rec.audio is None and rec.video is None and rec.text is None:
        return fail(None, "all modalities missing (no image, text, audio or video)")
    return rec


def read_manifest(path: str | Path, columns: dict[str, str] | None = None) -> Manifest:
    """Read and check a manifest. File-level problems raise `DataError`; row-level problems are
    collected in ``manifest.problems`` and the row is dropped (errors) or kept (warnings)."""
    path = _manifest_path(path)
    header, raw_rows, problems = read_table(path)
    fname = str(path)
    if not raw_rows:
        if problems:  # every line unusable: say why instead of "no modality column"
            p = problems[0]
            more = f" (and {len(problems) - 1} more rows)" if len(problems) > 1 else ""
            raise DataError(f"no usable row: {p.reason}{more}", file=fname, row=p.row,
                            column=p.column)
        raise DataError("manifest has no rows" + (f" (header: {', '.join(map(show, header))})"
                        if header else " (the file is empty)"), file=fname)
    n_rows = len(raw_rows) + len(problems)  # each unparsable line is one row
    cols = _resolve_columns(header, dict(columns or {}), path)
    used = set(cols.values())
    extra_cols = [h for h in header if h not in used]
    records: list[Record] = []
    seen: dict[str, int] = {}
    for n, raw in raw_rows:
        rec = _read_row(fname, n, raw, cols, path.parent, seen, problems)
        if rec is not None:
            rec.extra = {k: raw.get(k) for k in extra_cols}
            records.append(rec)
    problems.sort(key=lambda p: p.row or 0)  # stable: a row's problems keep their order
    return Manifest(path=path, records=records, columns=cols, problems=problems,
                    extra_columns=extra_cols, n_rows=n_rows)


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


def copy_with_columns(src: Path, out: Path, new: dict[str, dict[int, Any]],
                      media: list[str]) -> Path:
    """Copy the manifest ``src`` to ``out`` (atomic; JSONL, or CSV when ``out`` ends in .csv)
    adding the ``new`` columns (column -> {row number as `read_manifest` numbers rows: value};
    rows not given get an empty cell); relative paths in the ``media`` columns are rewritten
    relative to ``out``'s folder."""
    from polymodal.data.readers import read_rows

    _, rows = read_rows(src)
    moved = out.resolve().parent != src.resolve().parent
    recs = []
    for n, raw in rows:
        rec = dict(raw)
        for c in media if moved else ():
            if c in rec:
                rec[c] = _rebase(rec[c], src.parent, out.parent)
        rec.update({c: vals.get(n) for c, vals in new.items()})
        recs.append(rec)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_manifest(recs, out)


def _rebase(v: Any, old: Path, new: Path) -> Any:
    """A relative path cell of a manifest in ``old`` as seen from ``new`` (others unchanged)."""
    import os

    if not isinstance(v, str) or not v or "://" in v or Path(v).is_absolute():
        return v
    return os.path.relpath((old / v).resolve(), new.resolve())
