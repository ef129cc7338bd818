"""Shared pieces of the dataset builders: source checks, the output folder, splits, logging.

Output folders are replaced cleanly: generated media go to a hidden staging folder first and
are swapped in when the build succeeds; the manifest and ``dataset_info.json`` are written
atomically last. Media folders written by an earlier build that the new build does not produce
are removed (they are listed in the earlier ``dataset_info.json``).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from polymodal.core.atomic import umask
from polymodal.core.errors import PolymodalError, UsageError

log = logging.getLogger("polymodal.data.datasets")

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
INFO_FILE = "dataset_info.json"
MANIFEST_FILE = "manifest.jsonl"


def say(msg: str, progress: bool) -> None:
    """Log a summary line; also print it to stderr when progress output is on."""
    log.info(msg)
    if progress:
        print(msg, file=sys.stderr)


def bar(items: Iterable, progress: bool, desc: str, total: int | None = None):
    """A tqdm progress bar over ``items`` (silent when ``progress`` is False)."""
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, disable=not progress, unit="it", leave=False,
                file=sys.stderr)


def find_source(source: str | Path, name: str, subdir: str, markers: Sequence[str],
                expected: str) -> Path:
    """The folder that holds the dataset: ``source`` itself or ``source/subdir``.

    ``markers`` are relative paths (glob patterns allowed) that must all exist. Raises a
    `PolymodalError` naming what was expected when neither folder matches."""
    source = Path(source).expanduser()
    if not source.exists():
        raise PolymodalError(f"source folder for '{name}' not found: {source} (expected a "
                             f"folder with {expected})")
    if not source.is_dir():
        raise PolymodalError(f"source for '{name}' must be a folder, got a file: {source}")

    def ok(folder: Path) -> bool:
        return all(any(folder.glob(m)) if any(c in m for c in "*?[") else (folder / m).exists()
                   for m in markers)

    for cand in (source, source / subdir):
        if cand.is_dir() and ok(cand):
            return cand.resolve()
    where = "" if subdir in ("", ".") else f" (in the folder itself or in {subdir}/)"
    raise PolymodalError(f"{source} does not look like the '{name}' dataset: expected "
                         f"{expected}{where}")


def check_limit(limit: Any) -> int | None:
    """Validate a ``limit`` option (None or a positive int)."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise UsageError(f"limit must be a positive integer, got {limit!r}")
    return limit


def as_list(value: Any) -> list[str] | None:
    """Options given as a list or a comma-separated string (CLI) -> list of strings."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (absolute if on another drive)."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(root).resolve())).as_posix()
    except ValueError:  # Windows: different drives
        return Path(path).resolve().as_posix()


def speaker_split(speakers: Iterable[str], seed: int, test: Sequence[str] | None = None,
                  val: Sequence[str] | None = None) -> dict[str, str]:
    """Assign each speaker to train / val / test (about 1/6 each for val and test, at least one
    each when there are 3+ speakers), deterministic with ``seed``; ``test`` / ``val`` fix them."""
    import numpy as np

    names = sorted(set(speakers))
    for given in (test or []) + list(val or []):
        if given not in names:
            raise UsageError(f"unknown speaker '{given}'; speakers are {', '.join(names)}")
    if test and val and set(test) & set(val):
        raise UsageError("a speaker cannot be in both the test and the val split")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n = len(names)
    n_hold = max(1, round(n / 6)) if n >= 3 else 0
    test_set = list(test) if test else [s for s in order if s not in (val or [])][:n_hold]
    rest = [s for s in order if s not in test_set]
    val_set = list(val) if val else rest[:n_hold]
    return {s: "test" if s in test_set else "val" if s in val_set else "train" for s in names}


def split_counts(rows: Sequence[dict]) -> dict[str, int]:
    out = {"train": 0, "val": 0, "test": 0}
    for r in rows:
        out[r["split"]] = out.get(r["split"], 0) + 1
    return out


class OutputFolder:
    """Builds into ``out``: ``stage(name)`` gives a fresh folder that replaces ``out/name`` on
    `commit`; `abort` removes what was staged. Use as a context manager."""

    def __init__(self, out: str | Path):
        self.out = Path(out).expanduser().resolve()
        if self.out.exists() and not self.out.is_dir():
            raise PolymodalError(f"--out must be a folder, got a file: {self.out}")
        self.out.mkdir(parents=True, exist_ok=True)
        self.previous = self._read_previous()
        self.staged: dict[str, Path] = {}

    def _read_previous(self) -> dict | None:
        p = self.out / INFO_FILE
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def stage(self, name: str) -> Path:
        """A new empty folder whose content will become ``out/name``."""
        target = self.out / name
        if target.exists() and self.previous is None and any(target.iterdir()):
            raise PolymodalError(f"{target} exists and was not written by 'polymodal datasets "
                                 "build'; choose an empty --out folder or remove it")
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=self.out))
        os.chmod(tmp, 0o777 & ~umask())  # the folder it becomes: not mkdtemp's private 0700
        self.staged[name] = tmp
        return tmp

    def commit(self, rows: list[dict], info: dict) -> Path:
        """Swap staged folders in, drop stale media folders, write manifest + info atomically."""
        from polymodal.core.atomic import atomic_write_text
        from polymodal.data.manifest import write_manifest

        for name, tmp in self.staged.items():
            self._remove(self.out / name)
            os.replace(tmp, self.out / name)
        self.staged = {}
        for name in (self.previous or {}).get("media_dirs", []):
            if name not in info.get("media_dirs", []) and "/" not in name and name != "..":
                self._remove(self.out / name)
        path = write_manifest(rows, self.out / MANIFEST_FILE)
        atomic_write_text(self.out / INFO_FILE, json.dumps(info, indent=1, ensure_ascii=False)
                          + "\n")
        return path

    def abort(self) -> None:
        for tmp in self.staged.values():
            shutil.rmtree(tmp, ignore_errors=True)
        self.staged = {}

    @staticmethod
    def _remove(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()

    def __enter__(self) -> "OutputFolder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()
