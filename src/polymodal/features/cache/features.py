"""An encoded dataset on disk: per-modality matrices aligned with manifest ids.

Layout of an ``encode --out DIR`` folder::

    features.json        {"manifest":…, "n_rows":…, "modalities": {mod: {"encoder":…, "dim":…,
                         "count":…}}, "files": {name: size in bytes}}; written last
    ids.json             manifest ids, in manifest order (row index i <-> ids[i])
    <mod>.npy            float16 [M, dim] vectors (memory-mapped on read)
    <mod>_rows.npy       int64 [M]: the row index each vector belongs to (several captions of one
                         row give several vectors; a missing modality gives none)
    skipped.jsonl        rows/cells that could not be encoded: file, row, column, reason
    notes.jsonl          cells used in part (audio cut to the encoder's max_seconds, …)

A folder is written as a unit (`staging_dir` + `commit_dir`): into a hidden sibling
``.DIR.partial-<host>-<pid>-<id>``, which then replaces DIR (an atomic exchange where the
filesystem has one); the old folder stays whole until the new one is complete. `FeatureSet.load`
refuses, in one line, a folder whose files do not match the sizes features.json lists.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from polymodal.core.errors import PolymodalError, UsageError

META = "features.json"
FIXED_FILES = ("features.json", "ids.json", "skipped.jsonl", "notes.jsonl")
REENCODE = "re-run `polymodal encode`"


@dataclass
class FeatureSet:
    """Read access to an encoded dataset folder."""

    root: Path
    ids: list[str]
    meta: dict
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, root: str | Path) -> "FeatureSet":
        root = Path(root)
        meta_path = root / META
        if not meta_path.is_file():
            if root.is_dir() and any(_ours(p.name) and not p.name.startswith(".")
                                     for p in root.iterdir()):
                raise PolymodalError(f"{root}: half-written feature folder (no {META}: the "
                                     f"encode that wrote it did not finish); {REENCODE}")
            raise PolymodalError(f"{root}: not an encoded feature folder (no {META}); "
                                 "run `polymodal encode` first")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise PolymodalError(f"{root}: corrupt feature folder ({META}: {e})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("modalities"), dict):
            raise PolymodalError(f"{root}: corrupt feature folder ({META} has no 'modalities' "
                                 f"mapping); {REENCODE}")
        for name, size in (meta.get("files") or {}).items():  # absent in hand-made folders
            try:
                actual = (root / name).stat().st_size
            except OSError:
                raise PolymodalError(f"{root}: half-written feature folder ({name} is missing, "
                                     f"{META} lists it); {REENCODE}") from None
            if actual != size:
                raise PolymodalError(f"{root}: half-written feature folder ({name} has {actual} "
                                     f"bytes, {META} says {size}); {REENCODE}")
        try:
            ids = json.loads((root / "ids.json").read_text())
        except (OSError, ValueError) as e:
            raise PolymodalError(f"{root}: corrupt feature folder (ids.json: {e})") from None
        if not isinstance(ids, list) or len(ids) != meta.get("n_rows", len(ids)):
            raise PolymodalError(f"{root}: half-written feature folder (ids.json does not hold "
                                 f"the {meta.get('n_rows')} ids {META} says); {REENCODE}")
        return cls(root=root, ids=ids, meta=meta)

    @property
    def modalities(self) -> list[str]:
        return list(self.meta["modalities"])

    def dim(self, modality: str) -> int:
        return int(self.meta["modalities"][modality]["dim"])

    def encoder_id(self, modality: str) -> str:
        return self.meta["modalities"][modality]["encoder"]

    def vectors(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(vectors [M, dim] memory-mapped float16, row index [M])."""
        if modality not in self.meta["modalities"]:
            raise PolymodalError(f"{self.root}: no '{modality}' features; have "
                                 f"{', '.join(self.modalities) or 'none'}")
        if modality not in self._cache:
            try:
                v = np.load(self.root / f"{modality}.npy", mmap_mode="r")
                r = np.load(self.root / f"{modality}_rows.npy")
            except (OSError, ValueError, EOFError) as e:
                raise PolymodalError(f"{self.root}: cannot read the {modality} features "
                                     f"({' '.join(str(e).split())}); {REENCODE}") from None
            if v.ndim != 2 or r.shape != (len(v),):
                raise PolymodalError(f"{self.root}: half-written feature folder ({modality}.npy "
                                     f"has {v.shape[0]} rows, {modality}_rows.npy "
                                     f"{r.shape[0] if r.ndim else 0}); {REENCODE}")
            self._cache[modality] = (v, r)
        return self._cache[modality]

    def has_frames(self, modality: str) -> bool:
        return "frames" in self.meta["modalities"].get(modality, {})

    def frames(self, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-frame vectors of a video modality: (vectors [F, dim] float16, row index [F],
        time in seconds [F]); refused in one line when absent or inconsistent."""
        if not self.has_frames(modality):
            raise PolymodalError(f"{self.root}: no per-frame '{modality}' vectors (encode the "
                                 f"video column with a frames:<image encoder> encoder)")
        key = f"{modality}#frames"
        if key not in self._cache:
            try:
                v = np.load(self.root / f"{modality}_frames.npy", mmap_mode="r")
                r = np.load(self.root / f"{modality}_frames_rows.npy")
                t = np.load(self.root / f"{modality}_frames_times.npy")
            except (OSError, ValueError, EOFError) as e:
                raise PolymodalError(f"{self.root}: cannot read the {modality} frame vectors "
                                     f"({' '.join(str(e).split())}); {REENCODE}") from None
            n = int(self.meta["modalities"][modality]["frames"])
            if v.ndim != 2 or len(v) != n or r.shape != (n,) or t.shape != (n,):
                raise PolymodalError(f"{self.root}: half-written feature folder ({modality} "
                                     f"frame files do not hold the {n} frames {META} says); "
                                     f"{REENCODE}")
            self._cache[key] = (v, r, t)
        return self._cache[key]

    def per_row(self, modality: str, rows: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """One float32 vector per manifest row (mean over several vectors of a row) and a bool
        mask of rows that have this modality. ``rows`` selects row indices (default: all)."""
        v, r = self.vectors(modality)
        n = len(self.ids)
        out = np.zeros((n, v.shape[1]), np.float32)
        counts = np.zeros(n, np.int64)
        np.add.at(out, r, np.asarray(v, np.float32))
        np.add.at(counts, r, 1)
        present = counts > 0
        out[present] /= counts[present, None]
        if rows is not None:
            return out[rows], present[rows]
        return out, present


# ---------------------------------------------------------------- writing a folder as a unit
def _ours(name: str) -> bool:
    """A name a feature folder may hold (temp files of older versions start with a dot)."""
    return name in FIXED_FILES or name.endswith(".npy") or name.startswith(".")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", socket.gethostname())[:40] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _recover(out: Path) -> None:
    """Clean up after an encode killed while writing ``out``: its partial folders (this host,
    process gone) are removed; an old folder moved aside by the two-rename fallback is put back
    when ``out`` is missing, else removed."""
    if not out.parent.is_dir():
        return
    stage = re.compile(rf"\.{re.escape(out.name)}\.partial-(.+)-(\d+)-[0-9a-f]+")
    old = re.compile(rf"\.{re.escape(out.name)}\.old-[0-9a-f]+")
    for p in out.parent.iterdir():
        m = stage.fullmatch(p.name)
        if m and m.group(1) == _host() and not _alive(int(m.group(2))):
            shutil.rmtree(p, ignore_errors=True)
        elif old.fullmatch(p.name):
            if not out.exists():
                os.rename(p, out)
            else:
                shutil.rmtree(p, ignore_errors=True)


def check_replaceable(out: Path) -> None:
    """``out`` may be replaced by a new feature folder: it is missing, or a folder holding only
    feature-folder files (never a folder with other things in it, which would be lost)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder")
    other = sorted(p.name for p in out.iterdir() if not _ours(p.name))
    if other:
        raise UsageError(f"--out {out}: the folder holds {other[0]}, which is not part of a "
                         "feature folder (it would be replaced); choose a new or empty folder")


def staging_dir(out: Path) -> Path:
    """A new empty hidden sibling of ``out`` to write a feature folder into (after cleaning up
    what a killed encode into ``out`` left)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PolymodalError(f"--out {out}: cannot create its parent folder "
                             f"({e.strerror})") from None
    _recover(out)
    check_replaceable(out)
    stage = out.parent / f".{out.name}.partial-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        stage.mkdir()
    except OSError as e:
        raise PolymodalError(f"--out {out}: cannot create {stage.name} next to it "
                             f"({e.strerror}); a feature folder is written beside its final "
                             "place and then moved in") from None
    return stage


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False  # ENOSYS / EINVAL (filesystem without exchange) and the like: fall back


def commit_dir(stage: Path, out: Path) -> None:
    """Make the complete folder ``stage`` the folder ``out``. The old ``out`` is removed only
    once the new one is in place: an atomic exchange, else two renames (a process killed
    between them leaves the old folder aside, which `staging_dir` puts back)."""
    if not out.exists():
        os.rename(stage, out)
        return
    if _exchange(stage, out):
        shutil.rmtree(stage, ignore_errors=True)  # now the old folder
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(out, old)
    try:
        os.rename(stage, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def feature_folder(out: Path) -> Iterator[Path]:
    """Write a feature folder as a unit: yields a staging folder; on success it becomes ``out``
    (write features.json last, with `file_sizes`), on error it is removed and ``out`` is left
    as it was."""
    out = out.resolve() if out.is_symlink() else out  # replace the folder it points at
    stage = staging_dir(out)
    try:
        yield stage
        commit_dir(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def file_sizes(folder: Path) -> dict[str, int]:
    """``{name: size}`` of the files in a staging folder, for features.json."""
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.name != META}
