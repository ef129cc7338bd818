"""COCO captions (``captions_*.json``) to a polymodal JSONL manifest.

A COCO captions file holds ``images`` ([{id, file_name, ...}]) and ``annotations``
([{image_id, caption, ...}]). The manifest gets one row per image, in the order of ``images``:
``id`` (the COCO image id as a string), ``image`` (path relative to the manifest's folder where
possible), ``text`` (the list of all its captions, normalised; empty when it has none) and
``split`` when given. Malformed files raise `DataError` naming the file and the offending entry
(entries are numbered from 1 in the order of their list).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from polymodal.data.loaders import normalize_text
from polymodal.data.manifest import SPLIT_ALIASES, write_manifest
from polymodal.core.errors import DataError, UsageError


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError("COCO captions file not found", file=str(path))
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})",
                        file=str(path)) from None
    if not text.strip():
        raise DataError("COCO captions file is empty", file=str(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})",
                        file=str(path)) from None


def _entry_key(value: Any) -> str | None:
    """Ids compare as strings (COCO uses ints; some exports use strings)."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict, float)):
        return None
    s = str(value).strip()
    return s or None


def _images(data: dict, path: Path) -> dict[str, str]:
    """image id -> file_name, in file order."""
    out: dict[str, str] = {}
    for k, img in enumerate(data["images"], 1):
        where = f"images entry {k}"
        if not isinstance(img, dict):
            raise DataError(f"{where} is not an object", file=str(path))
        for key in ("id", "file_name"):
            if key not in img:
                raise DataError(f"{where} has no '{key}' key", file=str(path))
        iid = _entry_key(img["id"])
        if iid is None:
            raise DataError(f"{where} has a bad 'id' {img['id']!r} (expected an integer or "
                            "string)", file=str(path))
        name = img["file_name"]
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{where} (id {iid}) has a bad 'file_name' {name!r}", file=str(path))
        if iid in out:
            raise DataError(f"{where}: duplicate image id {iid}", file=str(path))
        out[iid] = name.strip()
    return out


def _captions(data: dict, ids: dict[str, str], path: Path) -> dict[str, list[str]]:
    caps: dict[str, list[str]] = {i: [] for i in ids}
    unknown: list[tuple[int, Any]] = []
    for k, ann in enumerate(data["annotations"], 1):
        where = f"annotations entry {k}" + (f" (id {ann['id']})" if isinstance(ann, dict)
                                            and "id" in ann else "")
        if not isinstance(ann, dict):
            raise DataError(f"{where} is not an object", file=str(path))
        for key in ("image_id", "caption"):
            if key not in ann:
                raise DataError(f"{where} has no '{key}' key", file=str(path))
        if not isinstance(ann["caption"], str):
            raise DataError(f"{where} has a non-text 'caption' {ann['caption']!r}",
                            file=str(path))
        iid = _entry_key(ann["image_id"])
        if iid not in caps:
            unknown.append((k, ann["image_id"]))
            continue
        cap = normalize_text(ann["caption"])
        if cap:
            caps[iid].append(cap)
    if unknown:
        k, iid = unknown[0]
        more = f" ({len(unknown)} such annotations)" if len(unknown) > 1 else ""
        raise DataError(f"annotations entry {k} refers to image_id {iid!r}, which is not in "
                        f"'images'{more}", file=str(path))
    return caps


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive on Windows
        return str(path)


def coco_to_manifest(json_path: str | Path, image_dir: str | Path, out_path: str | Path,
                     split: str | None = None) -> Path:
    """Convert a COCO captions JSON into a JSONL manifest at ``out_path`` (written atomically);
    returns ``out_path``. Image files are not opened (use `validate_manifest` for that)."""
    json_path = Path(json_path).expanduser().resolve()
    image_dir = Path(image_dir).expanduser().resolve()
    out_path = Path(out_path).expanduser().resolve()
    if out_path.suffix.lower() not in (".jsonl", ".ndjson"):
        raise UsageError(f"the manifest must be a .jsonl file (COCO images have several "
                         f"captions), got '{out_path.name}'")
    if split is not None:
        norm = SPLIT_ALIASES.get(split.strip().lower())
        if norm is None:
            raise UsageError(f"unknown split '{split}'; use train, val or test")
        split = norm
    if not image_dir.is_dir():
        raise DataError("image folder not found", file=str(image_dir))
    data = _load_json(json_path)
    if not isinstance(data, dict):
        raise DataError("not a COCO captions file: the top level must be an object with "
                        "'images' and 'annotations'", file=str(json_path))
    missing = [k for k in ("images", "annotations") if k not in data]
    if missing:
        raise DataError(f"not a COCO captions file: missing key {' and '.join(map(repr, missing))}"
                        f"; found keys: {', '.join(map(str, data)) or '(none)'}",
                        file=str(json_path))
    for key in ("images", "annotations"):
        if not isinstance(data[key], list):
            raise DataError(f"'{key}' must be a list, got {type(data[key]).__name__}",
                            file=str(json_path))
    if not data["images"]:
        raise DataError("'images' is empty: nothing to convert", file=str(json_path))
    ids = _images(data, json_path)
    caps = _captions(data, ids, json_path)
    rows = []
    for iid, name in ids.items():
        row: dict[str, Any] = {"id": iid, "image": _relative(image_dir / name, out_path.parent),
                               "text": caps[iid]}
        if split is not None:
            row["split"] = split
        rows.append(row)
    return write_manifest(rows, out_path)
