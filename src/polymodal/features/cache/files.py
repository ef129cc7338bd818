"""File and text digests: the keys of the feature cache.

``files.sqlite`` under the cache root remembers each file's digest with its (size, mtime,
ctime, inode, device) and when it was hashed, so unchanged files are not read on every run.
"""
from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import stat
import time
from pathlib import Path

RACY_NS = 2_000_000_000     # a digest taken this soon after a file changed is not reused


def connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=120, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def text_digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=20).hexdigest()


def file_digest(path: str | Path) -> str:
    """Digest of a file's bytes, read now (no shortcut)."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(st: os.stat_result) -> tuple[tuple[int, int, int, int, int], int]:
    """``((size, mtime, ctime, inode, device), when the file last changed)`` of a stat."""
    return ((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev),
            max(st.st_mtime_ns, st.st_ctime_ns))


class FileHasher:
    """Digest of a file's bytes. Reading every file on every run is slow, so a digest is
    remembered with the file's (size, mtime, ctime, inode, device) and reused only when all five
    are unchanged and it was taken more than `RACY_NS` after the file last changed (a write in
    the same timestamp tick as the hash leaves the stamp equal: git's "racy" rule). ``utime``
    cannot set ctime, so a file swapped for another of the same size and mtime, or replaced by a
    rename, is read again. `forget` drops a path: `encode` calls it for a file whose decode
    failed or whose bytes changed during the encode, so such a file is always read again."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self._con = connect(root / "files.sqlite")
        self._con.execute("CREATE TABLE IF NOT EXISTS file_digests (path TEXT PRIMARY KEY, "
                          "size INT, mtime INT, ctime INT, ino INT, dev INT, hashed_at INT, "
                          "digest TEXT)")
        self._con.execute("DROP TABLE IF EXISTS files")  # format 1: keyed on size + mtime only
        self._pending: dict[str, tuple] = {}
        self.hashed = 0  # files read (not answered from the remembered digest)

    def digest(self, path: Path) -> str:
        """Raises OSError when the file cannot be read or is not a regular file (checked
        before anything is opened: a FIFO or a device would block or never end)."""
        t0 = time.time_ns()
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a folder, pipe or device)", str(path))
        key = str(path.resolve())
        row = self._pending.get(key) or self._con.execute(
            "SELECT size, mtime, ctime, ino, dev, hashed_at, digest FROM file_digests "
            "WHERE path=?", (key,)).fetchone()
        stamp, changed = _stat_key(st)
        if row and tuple(row[:5]) == stamp and row[5] - changed > RACY_NS:
            return row[6]
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            before = os.fstat(fh.fileno())
            if not stat.S_ISREG(before.st_mode):  # swapped for a pipe since the stat
                raise OSError(errno.EINVAL, "not a regular file (a folder, pipe or device)",
                              str(path))
            h = hashlib.blake2b(digest_size=20)
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
            after = os.fstat(fh.fileno())
        d = h.hexdigest()
        self.hashed += 1
        self._pending.pop(key, None)
        if _stat_key(before) == _stat_key(after):  # else it changed while read: forget it
            self._pending[key] = (*_stat_key(before)[0], t0, d)
            if len(self._pending) >= 1000:
                self.flush()
        return d

    def forget(self, path: Path) -> None:
        """Never answer ``path`` from a remembered digest again (until it is re-hashed)."""
        key = str(Path(path).resolve())
        self._pending.pop(key, None)
        self._con.execute("DELETE FROM file_digests WHERE path=?", (key,))

    def flush(self) -> None:
        if self._pending:
            with self._con:
                self._con.execute("BEGIN")
                self._con.executemany("INSERT OR REPLACE INTO file_digests VALUES "
                                      "(?,?,?,?,?,?,?,?)",
                                      [(k, *v) for k, v in self._pending.items()])
            self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._con.close()
