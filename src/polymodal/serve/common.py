"""Pieces every served run kind shares: upload types and limits, the model lock, error mapping.

Library errors raised while answering become HTTP errors with a message: `UsageError` (a bad
request) -> 400, any other `PolymodalError` (e.g. an undecodable file) -> 422. Temporary upload
paths in messages are replaced by the name the user uploaded.
"""
from __future__ import annotations

import math
import mimetypes
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

from polymodal.core.errors import PolymodalError, UsageError
from polymodal.data.cells import text_problem
from polymodal.data.limits import MAX_QUERY_CHARS

IMAGE_TYPES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
AUDIO_TYPES = {".wav", ".flac", ".ogg", ".mp3"}
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and small fields on top of the file itself
RUN_KINDS = ("retrieval", "classification", "caption")


def upload_modality(filename: str | None, content_type: str | None = None) -> tuple[str, str]:
    """``(modality, suffix)`` of an upload from its file name (or, without a known suffix, its
    content type). Raises `UsageError` naming the accepted types otherwise."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in IMAGE_TYPES | AUDIO_TYPES and content_type:
        suffix = (mimetypes.guess_extension(content_type.split(";")[0].strip()) or "").lower()
    if suffix in IMAGE_TYPES:
        return "image", suffix
    if suffix in AUDIO_TYPES:
        return "audio", suffix
    raise UsageError(f"unsupported file type '{Path(filename or '').suffix or content_type or '?'}'"
                     f"; upload an image ({', '.join(sorted(IMAGE_TYPES))}) or audio "
                     f"({', '.join(sorted(AUDIO_TYPES))})")


def query_problem(text: str) -> str | None:
    """Why ``text`` cannot be a query (longer than `MAX_QUERY_CHARS`, a lone surrogate, a
    control character: the manifests' `text_problem`), or None."""
    if len(text) > MAX_QUERY_CHARS:
        return f"text too long ({len(text):,} characters > limit of {MAX_QUERY_CHARS:,})"
    return text_problem(text)


def query_text(text: Any) -> Any:
    """Pydantic validator of a query text field (a ValueError naming the problem)."""
    problem = query_problem(text) if isinstance(text, str) else None
    if problem:
        raise ValueError(problem)
    return text


def k_value(v: Any, n: int) -> int:
    """``k`` of a search: a whole number from 1 to ``n`` (the index size) given as a JSON number
    or a form string; a ValueError naming the value otherwise (NaN, infinities, 2.5, -1, ...)."""
    shown = v if isinstance(v, str) else repr(v)
    bad = ValueError(f"must be a whole number from 1 to {n} (the index size), got "
                     f"{shown if len(shown) <= 30 else shown[:27] + '…'}")
    if isinstance(v, str) and v.strip().lstrip("+").isdigit() and len(v.strip()) <= 12:
        v = int(v.strip())
    elif isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) < 1e12:
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= n:
        raise bad
    return v


def media_roots(items: Iterable[Any]) -> frozenset[Path]:
    """The folders of a manifest's media files, resolved: what ``/media`` may serve from."""
    folders = {Path(i).parent for i in items if isinstance(i, (str, os.PathLike))}
    return frozenset(f.resolve() for f in folders)


def served_file(path: Path, roots: frozenset[Path]) -> Path | None:
    """The real path of ``path`` (symlinks resolved) when it is a regular file inside one of
    ``roots``, else None."""
    try:
        real = path.resolve(strict=True)
        if stat.S_ISREG(os.stat(real).st_mode) and not roots.isdisjoint(real.parents):
            return real
    except (OSError, RuntimeError):  # missing, a loop of links, no permission
        pass
    return None


def run_kind(run_dir: str | Path) -> str:
    """``retrieval``, ``classification`` or ``caption``: the ``task`` in the run's config.yaml
    (a `PolymodalError` when the folder is not a run or its task cannot be served)."""
    from polymodal.core.runfolder import RunFolder

    task = RunFolder.open(run_dir).task  # the one run reader: missing / corrupt / format errors
    root = Path(run_dir)
    if task not in RUN_KINDS:
        raise PolymodalError(f"{root}: a '{task}' run cannot be served; serve a run made by "
                             "`fit retrieval`, `fit classify` or `fit caption`")
    return str(task)


class Guard:
    """The model lock, the upload limit and the error mapping of one app."""

    def __init__(self, max_upload_mb: float):
        if max_upload_mb <= 0:
            raise UsageError(f"max_upload_mb must be > 0, got {max_upload_mb}")
        self.max_upload_mb = max_upload_mb
        self.limit = int(max_upload_mb * 1024 * 1024)
        self.lock = threading.Lock()

    def run(self, fn: Callable[[], Any], renames: dict[str, str] | None = None) -> Any:
        """Run model work under the lock; library errors become 400 / 422 with a message."""
        from fastapi import HTTPException

        try:
            with self.lock:
                return fn()
        except UsageError as e:
            raise HTTPException(400, _rename(str(e), renames)) from None
        except PolymodalError as e:
            raise HTTPException(422, _rename(str(e), renames)) from None

    async def save(self, upload: Any, expect: str | None = None) -> tuple[Path, str]:
        """Write an upload to a temp file: ``(path, modality)``. 415 for an unsupported type (or
        one other than ``expect``), 413 when over the limit, 400 when empty."""
        from fastapi import HTTPException

        try:
            modality, suffix = upload_modality(upload.filename, upload.content_type)
        except UsageError as e:
            raise HTTPException(415, str(e)) from None
        if expect is not None and modality != expect:
            raise HTTPException(415, f"field '{expect}' expects an {expect} file, got "
                                     f"'{upload.filename}' ({modality})")
        data = await upload.read(self.limit + 1)
        if len(data) > self.limit:
            raise HTTPException(413, f"upload larger than {self.max_upload_mb:g} MB")
        if not data:
            raise HTTPException(400, f"empty upload '{upload.filename}'")
        with tempfile.NamedTemporaryFile(suffix=suffix, prefix="polymodal-upload-",
                                         delete=False) as tmp:
            tmp.write(data)
        return Path(tmp.name), modality


def _rename(msg: str, renames: dict[str, str] | None) -> str:
    for tmp, name in (renames or {}).items():
        msg = msg.replace(tmp, name)
    return msg

