"""Content-addressed feature store.

Layout under ``root``::

    files.sqlite                 path + size + mtime -> content digest (saves re-hashing)
    <encoder-slug>/index.sqlite  content digest -> (shard, row)
    <encoder-slug>/shard-*.npy   float16 matrices, memory-mapped on read

The key of a vector is (encoder id incl. preprocessing settings, digest of the file bytes or
text). Shards are written to a temp file and renamed before their index rows are committed, so a
crash never leaves a half-written vector visible; two processes can write at once (SQLite locks,
unique shard names, ``INSERT OR IGNORE``).
"""
from __future__ import annotations

import errno
import hashlib
import stat
import os
import re
import sqlite3
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from polymodal.core.atomic import atomic_path

DTYPE = np.float16


def default_cache_dir() -> Path:
    """``$POLYMODAL_CACHE`` or ``~/.cache/polymodal``."""
    env = os.environ.get("POLYMODAL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "polymodal"


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=120, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def text_digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).hexdigest()


class FileHasher:
    """Digest of a file's bytes, remembered by (path, size, mtime_ns)."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self._con = _connect(root / "files.sqlite")
        self._con.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INT, "
                          "mtime INT, digest TEXT)")
        self._pending: list[tuple] = []

    def digest(self, path: Path) -> str:
        """Raises OSError when the file cannot be read or is not a regular file (checked
        before anything is opened: a FIFO or a device would block or never end)."""
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a folder, pipe or device)", str(path))
        key = str(path.resolve())
        row = self._con.execute("SELECT size, mtime, digest FROM files WHERE path=?",
                                (key,)).fetchone()
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return row[2]
        h = hashlib.blake2b(digest_size=20)
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        d = h.hexdigest()
        self._pending.append((key, st.st_size, st.st_mtime_ns, d))
        if len(self._pending) >= 1000:
            self.flush()
        return d

    def flush(self) -> None:
        if self._pending:
            with self._con:
                self._con.execute("BEGIN")
                self._con.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?)",
                                      self._pending)
            self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._con.close()


def _slug(encoder_id: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_id)[:60]
    return f"{base}-{hashlib.sha1(encoder_id.encode()).hexdigest()[:10]}"


class FeatureStore:
    """Vectors of one encoder, keyed by content digest."""

    def __init__(self, root: str | Path, encoder_id: str):
        self.root = Path(root) / _slug(encoder_id)
        self.root.mkdir(parents=True, exist_ok=True)
        self.encoder_id = encoder_id
        self._con = _connect(self.root / "index.sqlite")
        self._con.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, shard TEXT, "
                          "row INT)")
        self._con.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        self._con.execute("INSERT OR IGNORE INTO meta VALUES ('encoder_id', ?)", (encoder_id,))
        self._shards: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self._con.execute("SELECT COUNT(*) FROM vec").fetchone()[0]

    def _shard(self, name: str) -> np.ndarray:
        if name not in self._shards:
            self._shards[name] = np.load(self.root / name, mmap_mode="r")
        return self._shards[name]

    def lookup(self, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        """Which keys are stored, and where."""
        found: dict[str, tuple[str, int]] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), 900):
            chunk = uniq[i:i + 900]
            q = f"SELECT key, shard, row FROM vec WHERE key IN ({','.join('?' * len(chunk))})"
            for k, s, r in self._con.execute(q, chunk):
                found[k] = (s, r)
        return found

    def gather(self, locations: Iterable[tuple[str, int]], out: np.ndarray) -> np.ndarray:
        """Copy the vectors at ``locations`` into rows of ``out`` (in order)."""
        locs = list(locations)
        by_shard: dict[str, list[int]] = {}
        for i, (s, _) in enumerate(locs):
            by_shard.setdefault(s, []).append(i)
        for s, idx in by_shard.items():
            rows = np.array([locs[i][1] for i in idx])
            out[np.array(idx)] = self._shard(s)[rows]
        return out

    def get(self, keys: Sequence[str], dim: int) -> np.ndarray:
        """Vectors for keys that are all stored (KeyError otherwise)."""
        where = self.lookup(keys)
        return self.gather((where[k] for k in keys), np.empty((len(keys), dim), DTYPE))

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (one shard file per call); keys already present are left as they are."""
        if len(keys) == 0:
            return
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) != len(keys):
            raise ValueError(f"expected {len(keys)} vectors, got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("refusing to cache non-finite vectors")
        name = f"shard-{uuid.uuid4().hex}.npy"
        with atomic_path(self.root / name) as tmp:
            with tmp.open("wb") as fh:
                np.save(fh, vectors.astype(DTYPE))
        with self._con:
            self._con.execute("BEGIN IMMEDIATE")
            self._con.executemany("INSERT OR IGNORE INTO vec VALUES (?,?,?)",
                                  [(k, name, i) for i, k in enumerate(keys)])

    def close(self) -> None:
        self._shards.clear()
        self._con.close()
