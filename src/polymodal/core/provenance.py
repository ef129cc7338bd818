"""What made a run: package versions, the git commit of the code, the manifest fingerprint,
the encoder ids, the command line and the start / end time, recorded in ``RUN/run.json``
under ``"provenance"`` (by `RunFolder.begin` / `RunFolder.finish`).

Nothing here imports the packages it reports (versions come from their installed metadata),
and nothing fails a fit: a missing git, a code tree outside a repository or an unreadable
manifest is recorded as ``null``.
"""
from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

# distributions reported when installed: the core, then the optional engines
CORE = ("polymodal", "torch", "numpy")
ENGINES = ("faiss-cpu", "lancedb", "pylance", "pyarrow", "ray", "mlflow", "mlflow-skinny",
           "accelerate", "transformers", "onnxruntime", "openvino", "ctranslate2",
           "faster-whisper", "fastapi", "safetensors", "pydantic")
CHUNK = 1 << 20


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    """``{distribution: version}`` of the core packages and the optional engines present."""
    out = {}
    for name in (*CORE, *ENGINES):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_info(path: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git work tree holding ``path`` (default: this package's
    source), None when it is not in one or git is missing. ``dirty``: tracked files differ
    from the commit (untracked files do not count)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def count_rows(path: Path) -> int | None:
    """Data rows of a manifest file: CSV / TSV records less the header, non-blank JSONL lines,
    Parquet's row count (None for another format or an unreadable file)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            with open(path, newline="", encoding="utf-8", errors="replace") as fh:
                n = sum(1 for row in csv.reader(fh, delimiter="\t" if suffix == ".tsv" else ",")
                        if row)
            return max(n - 1, 0)
        if suffix in (".jsonl", ".ndjson"):
            with open(path, "rb") as fh:
                return sum(1 for line in fh if line.strip())
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ImportError, ValueError, csv.Error):
        return None
    return None


def manifest_fingerprint(path: str | Path | None) -> dict[str, Any] | None:
    """``{"path", "blake2b", "bytes", "rows"}`` of a manifest file (blake2b-128 of its bytes,
    read in 1 MiB blocks); None when ``path`` is None or not a readable file."""
    if not path:
        return None
    p = Path(path)
    h = hashlib.blake2b(digest_size=16)
    size = 0
    try:
        with open(p, "rb") as fh:
            while block := fh.read(CHUNK):
                h.update(block)
                size += len(block)
    except OSError:
        return None
    return {"path": str(p), "blake2b": h.hexdigest(), "bytes": size, "rows": count_rows(p)}


def started() -> dict[str, Any]:
    """The provenance known when a fit starts."""
    return {"started": now(), "command": list(sys.argv), "python": sys.version.split()[0],
            "packages": package_versions(), "git": git_info()}


def finished(config: dict[str, Any] | None, encoders: dict[str, Any] | None) -> dict[str, Any]:
    """The provenance known when a fit ends: manifest fingerprint, encoder ids, end time.
    ``config`` is the run's task config with resolved paths, ``encoders`` its
    ``{modality: {"name", "id"}}``."""
    return {"finished": now(),
            "manifest": manifest_fingerprint((config or {}).get("manifest")),
            "encoders": {m: e.get("id") for m, e in (encoders or {}).items()}}
