"""Checks of single manifest cells: ids, texts, media paths, nested values.

Every check returns the value to use or raises `CellError` with a one-line reason that names
the offending value (shortened and escaped, so a message never carries a lone surrogate or a
control character to the terminal) and, where a limit applies, the value and the limit
(`polymodal.data.limits`). `read_manifest` turns a `CellError` into a row-level `Problem`, so
`validate`, `encode` and every task refuse the same cells with the same words.
"""
from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

from polymodal.data.limits import (MAX_CELL_CHARS, MAX_JSON_DEPTH, MAX_PATH_BYTES,
                                   MAX_PATH_PART_BYTES, MAX_TEXT_CHARS)

_SURROGATE = re.compile(r"[\ud800-\udfff]")
# C0 controls except tab / newline / carriage return, and DEL. C1 controls (U+0080-U+009F) are
# allowed: real captions carry them as mojibake (OpenClipart: "Mikol\u00e1\u009a Ale\u009a"),
# and tokenizers drop them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_PATH_CONTROL = re.compile(r"[\x01-\x1f\x7f]")  # paths: tab and newline too
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # escaped in messages


class CellError(ValueError):
    """One unusable cell; the message is the reason (one line)."""


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (Python's name for non-JSON values)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def show(value: Any, limit: int = 60) -> str:
    """A short, printable rendering of a cell value for messages."""
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value):,} bytes>"
    if isinstance(value, str):
        s = value
    else:
        try:
            s = json.dumps(value, ensure_ascii=False, allow_nan=True, default=repr)
        except (ValueError, RecursionError):  # circular or too deep: never print it whole
            s = f"<{json_type(value)}>"
    if len(s) > limit:
        s = s[:limit] + "…"
    return _SURROGATE.sub(_escape, _UNPRINTABLE.sub(_escape, s))


def _escape(m: re.Match) -> str:
    return f"\\u{ord(m.group()):04x}"


def depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of lists / dicts (a scalar is 0, ``[1]`` is 1), computed without recursion;
    stops counting just above ``limit``."""
    best, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        elif not isinstance(v, (list, tuple)):
            continue
        best = max(best, d + 1)
        if best > limit:
            return best
        stack.extend((x, d + 1) for x in v if isinstance(x, (list, tuple, dict)))
    return best


TOO_DEEP = (f"value nested too deeply (more than the limit of {MAX_JSON_DEPTH} levels of "
            "lists / objects)")


def check_depth(value: Any) -> None:
    if isinstance(value, (list, tuple, dict)) and depth(value) > MAX_JSON_DEPTH:
        raise CellError(TOO_DEEP)


def check_cell_size(value: Any) -> None:
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        raise CellError(f"cell too long ({len(value):,} characters > limit of "
                        f"{MAX_CELL_CHARS:,})")


def text_problem(text: str) -> str | None:
    """Why a text cannot be used (too long, invalid Unicode, control characters), or None.
    The one check shared by manifests, `encode` and queries."""
    if len(text) > MAX_TEXT_CHARS:
        return f"text too long ({len(text):,} characters > limit of {MAX_TEXT_CHARS:,})"
    m = _SURROGATE.search(text)
    if m:
        return (f"text is not valid Unicode: lone surrogate U+{ord(m.group()):04X} at character "
                f"{m.start() + 1}")
    m = _CONTROL.search(text)
    if m:
        return f"text contains control character U+{ord(m.group()):04X} at character {m.start() + 1}"
    return None


def is_blank(text: str) -> bool:
    """True when a text shows nothing: only whitespace and invisible format characters
    (zero-width space / joiners, BOM, soft hyphen, direction marks)."""
    return all(c.isspace() or unicodedata.category(c) == "Cf" for c in text)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def texts(value: Any) -> list[str] | None:
    """The captions of a text cell: a string, a list of strings, or a CSV cell holding a JSON
    list of strings (what `write_manifest` writes). NFC-normalised, whitespace collapsed; empty
    and invisible-only captions dropped; None when nothing is left."""
    if _missing(value):
        return None
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            parsed = json.loads(value)
        except RecursionError:
            raise CellError(TOO_DEEP) from None
        except ValueError:
            parsed = None  # not JSON: a caption that starts with "["
        if isinstance(parsed, list):
            check_depth(parsed)
            value = parsed
    if isinstance(value, str):
        items, many = [value], False
    elif isinstance(value, (list, tuple)):
        items, many = list(value), True
    else:
        raise CellError(f"expected text (a string or a list of strings), got {json_type(value)} "
                        f"{show(value)}")
    out = []
    for k, item in enumerate(items, 1):
        where = f" (caption {k} of the list)" if many else ""
        if _missing(item):
            continue
        if not isinstance(item, str):
            raise CellError(f"expected a string{where}, got {json_type(item)} {show(item)}")
        reason = text_problem(item)
        if reason:
            raise CellError(reason + where)
        if is_blank(item):
            continue
        out.append(" ".join(unicodedata.normalize("NFC", item).split()))
    return out or None


def row_id(value: Any) -> str | None:
    """An id cell as a string: strings (stripped) and integers; None when blank. Booleans,
    arrays, objects and non-integral numbers are refused rather than turned into ``"True"``
    or ``"['a', 1]"``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise CellError(f"id must be a string or an integer, got {json_type(value)} "
                        f"{show(value)}")
    if isinstance(value, float):
        if not value.is_integer():  # NaN is reported before; integral floats come from
            raise CellError(f"id must be a string or an integer, got number {show(value)}")
        value = int(value)  # integer columns with nulls (Parquet / pandas store them as float)
    s = str(value).strip()
    if is_blank(s):
        return None
    reason = text_problem(s)
    if reason:
        raise CellError(reason.replace("text", "id", 1))
    return s


def media_path(value: Any, root: Path) -> Path:
    """The absolute path of a media cell (relative paths resolve against ``root``)."""
    if not isinstance(value, str):
        raise CellError(f"expected a file path (a string), got {json_type(value)} {show(value)}")
    v = value.strip()
    if "://" in v:
        raise CellError(f"expected a local file path, got a URL '{show(v)}'; download the "
                        "files first")
    if "\x00" in v:
        raise CellError(f"path contains a NUL byte at character {v.index(chr(0)) + 1}: "
                        f"'{show(v)}'")
    m = _SURROGATE.search(v)
    if m:
        raise CellError(f"path is not valid Unicode: lone surrogate U+{ord(m.group()):04X} at "
                        f"character {m.start() + 1}")
    m = _PATH_CONTROL.search(v)
    if m:
        raise CellError(f"path contains control character U+{ord(m.group()):04X} at character "
                        f"{m.start() + 1}: '{show(v)}'")
    try:
        p = Path(v).expanduser()
    except (RuntimeError, KeyError):  # "~nosuchuser/x.png"
        user = v[1:].split("/", 1)[0]
        raise CellError(f"cannot expand '~{show(user, 40)}' in '{show(v)}': no such user "
                        "(or no home directory)") from None
    p = p if p.is_absolute() else root / p
    n = len(os.fsencode(str(p)))
    if n > MAX_PATH_BYTES:
        raise CellError(f"path too long ({n:,} bytes > limit of {MAX_PATH_BYTES:,}): "
                        f"'{show(v)}'")
    for part in p.parts:
        n = len(os.fsencode(part))
        if n > MAX_PATH_PART_BYTES:
            raise CellError(f"file or folder name too long ({n:,} bytes > limit of "
                            f"{MAX_PATH_PART_BYTES}): '{show(part)}'")
    return p
