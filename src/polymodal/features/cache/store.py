"""Content-addressed feature store that verifies every vector it returns.

Layout under ``root``::

    files.sqlite                 path -> (size, mtime, ctime, inode, device, hashed_at) -> digest
                                 (`polymodal.features.cache.files.FileHasher`)
    <encoder-slug>/index.sqlite  key -> (shard, row, checksum); meta: encoder_id, dim
    <encoder-slug>/shard-*.f16   raw little-endian float16 rows of ``dim`` values

The key of a vector is (encoder id incl. preprocessing settings, digest of the file bytes or
text). A writer appends rows to a shard file of its own and then commits their index rows in one
transaction (`put` is a checkpoint), so a killed process loses at most the put it was in; two
processes can write at once (SQLite locks, one shard file per writer, ``INSERT OR IGNORE``).

Each index row carries ``checksum`` = blake2b(key + the row's bytes). `fetch` checks it and
finiteness for every vector it reads and *drops* entries that fail (corrupt bytes, a truncated
or deleted shard, an index row pointing at the wrong row, NaN), so callers re-encode them; a bad
vector is never returned. Reads use ``pread`` (no memory map: a shard truncated under a map
would kill the process with SIGBUS). Shard files no index row refers to (a writer killed before
its first commit, a shard whose entries were all dropped, the ``.npy`` shards of format 1) are
removed by `gc` once older than a grace period, run on open.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import time
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from polymodal.features.cache.files import FileHasher, connect, file_digest, text_digest

DTYPE = np.dtype("<f2")
SHARD_BYTES = 64 << 20      # a writer starts a new shard file past this size
PUT_ROWS = 4096             # rows appended per write (one put may hold more)
GC_GRACE_S = 15 * 60        # unreferenced shards younger than this may be a writer's new file
_RUN_GAP = 64               # requested rows closer than this are read with one pread
_SHARD = re.compile(r"shard-[0-9a-f]{32}\.f16")


def default_cache_dir() -> Path:
    """``$POLYMODAL_CACHE`` or ``~/.cache/polymodal``."""
    env = os.environ.get("POLYMODAL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "polymodal"


def vector_checksum(key: str, row: np.ndarray) -> str:
    """What an index row stores for the float16 vector of ``key``: binds the bytes to the key,
    so a row that points at another key's vector fails too."""
    return hashlib.blake2b(key.encode("utf-8") + np.ascontiguousarray(row, DTYPE).tobytes(),
                           digest_size=8).hexdigest()


def _slug(encoder_id: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_id)[:60]
    return f"{base}-{hashlib.sha1(encoder_id.encode()).hexdigest()[:10]}"


class FeatureStore:
    """Vectors of one encoder, keyed by content digest, verified on read.

    ``dropped`` counts entries that failed verification and were removed from the index (the
    caller re-encodes them); ``collected`` the orphaned shard files `gc` removed on open."""

    def __init__(self, root: str | Path, encoder_id: str, gc_grace_s: float | None = None):
        self.root = Path(root) / _slug(encoder_id)
        self.root.mkdir(parents=True, exist_ok=True)
        self.encoder_id = encoder_id
        self._con = connect(self.root / "index.sqlite")
        self._con.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, "
                          "shard TEXT NOT NULL, row INT NOT NULL, checksum TEXT NOT NULL)")
        self._con.execute("CREATE INDEX IF NOT EXISTS vectors_shard ON vectors (shard)")
        self._con.execute("DROP TABLE IF EXISTS vec")  # format 1 rows have no checksum
        self._con.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        self._con.execute("INSERT OR IGNORE INTO meta VALUES ('encoder_id', ?)", (encoder_id,))
        self._writer: tuple[str, object] | None = None  # (shard name, open file)
        self.dropped = 0
        self.collected = self.gc(GC_GRACE_S if gc_grace_s is None else gc_grace_s)

    def __len__(self) -> int:
        return self._con.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    # ------------------------------------------------------------ reading
    def _dim(self) -> int | None:
        row = self._con.execute("SELECT v FROM meta WHERE k='dim'").fetchone()
        return int(row[0]) if row else None

    def lookup(self, keys: Sequence[str]) -> dict[str, tuple[str, int, str]]:
        """Which keys have an index row, and where: ``{key: (shard, row, checksum)}``
        (unverified: `fetch` reads and checks the vectors)."""
        found: dict[str, tuple[str, int, str]] = {}
        uniq = list(dict.fromkeys(keys))
        for i in range(0, len(uniq), 900):
            chunk = uniq[i:i + 900]
            q = ("SELECT key, shard, row, checksum FROM vectors WHERE key IN "
                 f"({','.join('?' * len(chunk))})")
            for k, s, r, c in self._con.execute(q, chunk):
                found[k] = (s, int(r), c)
        return found

    def _read_rows(self, shard: str, rows: np.ndarray, dim: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of one shard file and a mask of those read in full (a missing, truncated or
        unreadable shard gives False, never an exception)."""
        block = np.zeros((len(rows), dim), DTYPE)
        got = np.zeros(len(rows), bool)
        if not _SHARD.fullmatch(shard):  # an index row naming any other file is bad
            return block, got
        rowbytes = dim * DTYPE.itemsize
        try:
            fd = os.open(self.root / shard, os.O_RDONLY)
        except OSError:
            return block, got
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return block, got
            order = np.argsort(rows, kind="stable")
            srt = rows[order]
            pos = np.flatnonzero((srt >= 0) & (srt < st.st_size // rowbytes))
            vs = srt[pos]
            for part in np.split(np.arange(len(vs)), np.flatnonzero(np.diff(vs) > _RUN_GAP) + 1):
                if not len(part):
                    continue
                lo, hi = int(vs[part[0]]), int(vs[part[-1]]) + 1
                buf = os.pread(fd, (hi - lo) * rowbytes, lo * rowbytes)
                have = len(buf) // rowbytes
                arr = np.frombuffer(buf, DTYPE, count=have * dim).reshape(have, dim)
                local = vs[part] - lo
                ok = local < have
                target = order[pos[part]][ok]
                block[target] = arr[local[ok]]
                got[target] = True
        except OSError:  # EIO and the like: what was not read stays bad
            pass
        finally:
            os.close(fd)
        return block, got

    def fetch(self, keys: Sequence[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors [len(keys), dim] float16, ok [len(keys)] bool)``: the verified vector of
        every stored key; a key that is not stored or whose entry fails verification (checksum,
        finiteness, shard readable) gets ``ok=False`` and zeros, and a failed entry is removed
        from the index (counted in ``dropped``) so that it is re-encoded."""
        keys = list(keys)
        out = np.zeros((len(keys), dim), DTYPE)
        ok = np.zeros(len(keys), bool)
        where = self.lookup(keys)
        if not where:
            return out, ok
        bad: set[tuple[str, str, int]] = set()
        if self._dim() != dim:  # vectors of another width cannot be this encoder's
            bad = {(k, s, r) for k, (s, r, _) in where.items()}
        else:
            by_shard: dict[str, list[int]] = {}
            for i, k in enumerate(keys):
                if k in where:
                    by_shard.setdefault(where[k][0], []).append(i)
            for shard, idx in by_shard.items():
                rows = np.array([where[keys[i]][1] for i in idx], np.int64)
                block, got = self._read_rows(shard, rows, dim)
                finite = np.isfinite(block).all(1)
                for j, i in enumerate(idx):
                    k = keys[i]
                    if got[j] and finite[j] and vector_checksum(k, block[j]) == where[k][2]:
                        out[i] = block[j]
                        ok[i] = True
                    else:
                        bad.add((k, shard, int(rows[j])))
        if bad:
            with self._con:
                self._con.execute("BEGIN IMMEDIATE")
                self._con.executemany("DELETE FROM vectors WHERE key=? AND shard=? AND row=?",
                                      sorted(bad))
            self.dropped += len(bad)
        return out, ok

    def get(self, keys: Sequence[str], dim: int) -> np.ndarray:
        """Verified vectors for keys that are all stored (KeyError otherwise)."""
        out, ok = self.fetch(keys, dim)
        if not ok.all():
            raise KeyError(list(keys)[int(np.flatnonzero(~ok)[0])])
        return out

    # ------------------------------------------------------------ writing
    def _set_dim(self, dim: int) -> None:
        self._con.execute("INSERT OR IGNORE INTO meta VALUES ('dim', ?)", (str(dim),))
        stored = self._dim()
        if stored != dim:
            raise ValueError(f"this store holds {stored}-d vectors, got {dim}-d")

    def _append(self, data: np.ndarray) -> tuple[str, int]:
        """Append rows to this writer's shard; returns (shard name, first row)."""
        if self._writer is not None and self._writer[1].tell() >= SHARD_BYTES:
            self._close_writer()
        if self._writer is None:
            name = f"shard-{uuid.uuid4().hex}.f16"
            self._writer = (name, open(self.root / name, "ab"))
        name, fh = self._writer
        start = fh.tell()
        try:
            fh.write(data.tobytes())
            fh.flush()  # in the OS before the index rows are committed (kill -9 safe)
        except BaseException:
            self._close_writer()  # a partial row would shift every later row: new file
            raise
        return name, start // (data.shape[1] * DTYPE.itemsize)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer[1].close()
            self._writer = None

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors and commit their index rows (a checkpoint); keys already present
        are left as they are."""
        keys = list(keys)
        if len(keys) == 0:
            return
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or len(vectors) != len(keys):
            raise ValueError(f"expected {len(keys)} vectors, got shape {vectors.shape}")
        half = vectors.astype(DTYPE)
        if not (np.isfinite(vectors).all() and np.isfinite(half).all()):
            raise ValueError("refusing to cache non-finite vectors (float16 range: ±65504)")
        self._set_dim(int(half.shape[1]))
        present = self.lookup(keys)
        seen, fresh = set(present), []
        for i, k in enumerate(keys):
            if k not in seen:
                seen.add(k)
                fresh.append(i)
        records = []
        for s in range(0, len(fresh), PUT_ROWS):
            idx = fresh[s:s + PUT_ROWS]
            name, start = self._append(half[idx])
            records += [(keys[i], name, start + j, vector_checksum(keys[i], half[i]))
                        for j, i in enumerate(idx)]
        if records:
            with self._con:
                self._con.execute("BEGIN IMMEDIATE")
                self._con.executemany("INSERT OR IGNORE INTO vectors VALUES (?,?,?,?)", records)

    # ------------------------------------------------------------ housekeeping
    def gc(self, grace_s: float | None = None) -> int:
        """Remove shard files (and temp files of format 1) that no index row refers to and
        that are older than ``grace_s`` (a younger one may be a running writer's new file);
        returns how many."""
        grace_s = GC_GRACE_S if grace_s is None else grace_s
        referenced = {s for (s,) in self._con.execute("SELECT DISTINCT shard FROM vectors")}
        if self._writer is not None:
            referenced.add(self._writer[0])
        now, n = time.time(), 0
        for p in self.root.iterdir():
            if not p.name.startswith(("shard-", ".shard-")) or p.name in referenced:
                continue
            try:
                if now - p.lstat().st_mtime >= grace_s:
                    p.unlink()
                    n += 1
            except OSError:  # removed meanwhile by another process
                continue
        return n

    def close(self) -> None:
        self._close_writer()
        self._con.close()


__all__ = ["FeatureStore", "FileHasher", "default_cache_dir", "file_digest", "text_digest",
           "vector_checksum"]
