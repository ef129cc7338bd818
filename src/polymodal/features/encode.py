"""Encode a manifest into cached features: the first step of every task.

Each cell (an image, an audio file, one caption) is keyed by encoder id + content digest. Cells
already in the feature store are copied, the rest are decoded in a thread pool, encoded in
batches and stored. Bad cells are skipped and reported (file, row, column, reason); the run goes on.
Media files pass the same checks as ``validate`` (`check_file` before hashing, then the loaders'
header limits), with the same reasons; cells used only in part (audio longer than the encoder's
``max_seconds``, the first frame of an animated image) are listed in ``notes.jsonl`` and in the
summary.
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from polymodal.core.atomic import atomic_path, atomic_write_text
from polymodal.features.cache.features import (FeatureSet, check_replaceable, feature_folder,
                                               file_sizes)
from polymodal.features.cache.store import (FeatureStore, FileHasher, default_cache_dir,
                                            file_digest, text_digest)
from polymodal.data.loaders import check_file, media_note
from polymodal.data.cells import text_problem
from polymodal.data.manifest import Manifest, read_manifest
from polymodal.data.validate import media_label
from polymodal.features.encoders import DEFAULT_ENCODERS, Encoder, build_encoder
from polymodal.core.errors import DecodeError, PolymodalError, Problem, UsageError

WRITE_ROWS = 16384  # vectors copied from the cache into the output matrix at a time


@dataclass
class ModalityStats:
    encoder: str
    items: int = 0
    cached: int = 0
    encoded: int = 0
    skipped: int = 0
    reencoded: int = 0  # cache entries that failed verification (dropped, encoded again)
    seconds: float = 0.0


@dataclass
class EncodeResult:
    """What ``encode_manifest`` did; ``features`` reads the written folder."""

    out: Path
    rows: int
    stats: dict[str, ModalityStats]
    skipped: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)  # used cells that were cut (notes.jsonl)
    collected: int = 0  # orphaned cache shards removed (a killed or concurrent encode's)

    @property
    def features(self) -> FeatureSet:
        return FeatureSet.load(self.out)

    def table(self) -> str:
        """Plain-text summary table."""
        head = f"{'modality':<9} {'encoder':<20} {'items':>7} {'cached':>7} {'encoded':>8} " \
               f"{'skipped':>8} {'seconds':>8}"
        lines = [head, "-" * len(head)]
        for m, s in self.stats.items():
            lines.append(f"{m:<9} {s.encoder:<20} {s.items:>7} {s.cached:>7} {s.encoded:>8} "
                         f"{s.skipped:>8} {s.seconds:>8.1f}")
        reencoded = sum(s.reencoded for s in self.stats.values())
        if reencoded:
            lines.append(f"re-encoded {reencoded} cache entries that failed verification")
        if self.collected:
            lines.append(f"removed {self.collected} orphaned cache shards")
        if self.notes:  # e.g. audio longer than the encoder's max_seconds: say it was cut
            lines.append(f"notes: {len(self.notes)} cells used in part or pooled over windows "
                         f"(details in {self.out / 'notes.jsonl'})")
            lines += [f"  row {p.row}  {p.column}: {p.reason}" for p in self.notes[:5]]
            if len(self.notes) > 5:
                lines.append(f"  … and {len(self.notes) - 5} more")
        return "\n".join(lines)


def resolve_encoders(manifest: Manifest, spec: dict[str, Any] | None,
                     modalities: Sequence[str] | None = None) -> dict[str, Encoder]:
    """Encoders for ``modalities`` (default: every modality of the manifest): ``spec`` maps
    modality -> name or Encoder and overrides only the modalities it names; the others use the
    offline defaults. Naming a modality the manifest lacks (or that is not encoded) is an
    error."""
    spec = dict(spec or {})
    mods = list(modalities) if modalities is not None else manifest.modalities
    for m in [*spec, *mods]:
        if m not in manifest.modalities:
            raise UsageError(f"--encoder {m}=…: the manifest has no '{m}' column (it has "
                             f"{', '.join(manifest.modalities)})")
    extra = sorted(set(spec) - set(mods))
    if extra:
        raise UsageError(f"--encoder {extra[0]}=…: only {', '.join(mods)} is encoded here")
    out: dict[str, Encoder] = {}
    for m in mods:
        e = spec.get(m, DEFAULT_ENCODERS[m])
        out[m] = build_encoder(e, modality=m) if isinstance(e, str) else e
    return out


def _prefetch(pool: ThreadPoolExecutor, fn, items: Sequence[Any], depth: int) -> Iterator:
    """Map ``fn`` over items in a thread pool with at most ``depth`` results in flight."""
    it = iter(items)
    inflight: deque = deque()
    for item in it:
        inflight.append(pool.submit(fn, item))
        if len(inflight) >= depth:
            break
    while inflight:
        res = inflight.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            inflight.append(pool.submit(fn, nxt))
        yield res


def _cells(manifest: Manifest, modality: str) -> list[tuple[int, Any]]:
    """(row index, item) for every cell of a modality; captions of one row are separate cells."""
    cells = []
    for i, rec in enumerate(manifest.records):
        item = rec.get(modality)
        if item is None:
            continue
        for x in (item if isinstance(item, list) else [item]):
            cells.append((i, x))
    return cells


def _verified(store: FeatureStore, keys: Sequence[str], dim: int) -> set[str]:
    """The keys whose cached vector passes verification (`FeatureStore.fetch`: checksum,
    finiteness, readable shard); entries that fail are dropped from the cache."""
    uniq = list(dict.fromkeys(keys))
    good: set[str] = set()
    for s in range(0, len(uniq), WRITE_ROWS):
        part = uniq[s:s + WRITE_ROWS]
        _, ok = store.fetch(part, dim)
        good.update(k for k, o in zip(part, ok) if o)
    return good


def _same_bytes(path: Any, key: str) -> bool:
    """Whether the file still holds the bytes its key was computed from: checked after it is
    decoded, so a vector is always stored under the digest of the bytes it was made from (a file
    changed since it was hashed must not give the old content's key a new vector)."""
    try:
        return file_digest(path) == key
    except OSError:
        return False


def _encode_modality(manifest: Manifest, modality: str, encoder: Encoder, store: FeatureStore,
                     hasher: FileHasher, out: Path, batch_size: int, workers: int,
                     progress: bool, skipped: list[Problem],
                     notes: list[Problem]) -> ModalityStats:
    t0 = time.perf_counter()
    stats = ModalityStats(encoder=encoder.name)
    cells = _cells(manifest, modality)
    stats.items = len(cells)
    col = manifest.column_of(modality)
    fname = str(manifest.path)
    recs = manifest.records

    def fail(i: int, reason: str) -> None:
        skipped.append(Problem(fname, recs[i].row, col, reason))

    def label(item: Any) -> str:  # names a file as validate does
        return media_label(Path(item), manifest.root)

    keys: list[str | None] = []
    for i, item in cells:
        if modality == "text":
            reason = text_problem(item)  # the check read_manifest applies (Manifests built
            if reason:  # in code skip it): a lone surrogate must not crash text_digest
                keys.append(None)
                fail(i, reason)
            else:
                keys.append(text_digest(item))
            continue
        try:
            check_file(item)  # regular, non-empty, within MAX_FILE_BYTES: before hashing
            keys.append(hasher.digest(Path(item)))
        except DecodeError as e:
            keys.append(None)
            fail(i, f"{label(item)}: {e.reason}")
        except FileNotFoundError:
            keys.append(None)
            fail(i, f"file not found: {item}")
        except OSError as e:
            keys.append(None)
            fail(i, f"cannot read {item}: {e.strerror or e}")
    hasher.flush()
    dim = int(encoder.dim)
    dropped = store.dropped
    where = _verified(store, [k for k in keys if k is not None], dim)  # bad entries dropped
    stats.reencoded = store.dropped - dropped
    todo: dict[str, Any] = {}
    for (i, item), k in zip(cells, keys):
        if k is not None and k not in where and k not in todo:
            todo[k] = item
    stats.cached = sum(1 for k in keys if k is not None and k in where)
    order = list(todo)
    if modality == "text":
        order.sort(key=lambda k: len(todo[k]))
    bad_keys: dict[str, str] = {}

    def prepare(k: str) -> tuple[str, Any, str | None]:
        try:
            x = encoder.prepare(todo[k])
            if modality != "text" and not _same_bytes(todo[k], k):
                return k, None, "the file changed during the encode (re-run to encode it)"
            return k, x, None
        except DecodeError as e:
            return k, None, f"{label(todo[k])}: {e.reason}"
        except PolymodalError as e:
            return k, None, getattr(e, "reason", str(e))
        except Exception as e:  # a batch job keeps going; report the cell
            return k, None, f"unexpected {type(e).__name__}: {e}"

    bar = tqdm(total=len(order), desc=f"encode {modality} ({encoder.name})", unit="item",
               disable=not progress or not order, dynamic_ncols=True)

    def run_batch(batch: list[tuple[str, Any]]) -> None:
        with torch.inference_mode():
            vec = encoder.encode_prepared([x for _, x in batch]).float().cpu().numpy()
        with np.errstate(over="ignore"):
            fine = np.isfinite(vec.astype(np.float16)).all(1)  # as the cache stores them
        for (k, _), f in zip(batch, fine):
            if not f:
                bad_keys[k] = "encoder produced non-finite values"
        # every batch is a checkpoint: committed to the cache now, so a killed encode keeps
        # all but the batch in flight and a re-run reuses them
        store.put([k for (k, _), f in zip(batch, fine) if f], vec[fine])
        bar.update(len(batch))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        batch: list[tuple[str, Any]] = []
        for k, x, err in _prefetch(pool, prepare, order, depth=batch_size * 4):
            if err is not None:
                bad_keys[k] = err
                bar.update(1)
                continue
            batch.append((k, x))
            if len(batch) >= batch_size:
                run_batch(batch)
                batch = []
        if batch:
            run_batch(batch)
    bar.close()
    stats.encoded = len(order) - len(bad_keys)
    where |= set(todo) - set(bad_keys)
    good: list[tuple[int, str]] = []
    for (i, item), k in zip(cells, keys):
        if k is None:
            continue
        if k in bad_keys:
            fail(i, bad_keys[k])
            if modality != "text":  # never answer this path from a remembered digest again
                hasher.forget(Path(item))
        elif k in where:
            good.append((i, k))
    stats.skipped = len(cells) - len(good)
    if modality != "text":
        _note_cells(modality, cells, keys, set(where) - set(bad_keys),
                    getattr(encoder, "max_seconds", None), workers,
                    lambda i, item, note: notes.append(
                        Problem(fname, recs[i].row, col, f"{label(item)}: {note}", "warning")),
                    getattr(encoder, "media_note", None))  # audio encoders: + windows pooled
    with atomic_path(out / f"{modality}.npy") as tmp:
        mat = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(good), dim))
        for s in range(0, len(good), WRITE_ROWS):
            part = good[s:s + WRITE_ROWS]
            vec, ok = store.fetch([k for _, k in part], dim)  # verified again as it is copied
            if not ok.all():
                raise PolymodalError(f"{store.root}: {int((~ok).sum())} cache entries changed "
                                     "while the output was written (another process or a "
                                     "failing disk); re-run `polymodal encode`")
            mat[s:s + len(part)] = vec
        mat.flush()
        del mat
    with atomic_path(out / f"{modality}_rows.npy") as tmp:
        np.save(tmp, np.array([i for i, _ in good], dtype=np.int64))
    stats.seconds = time.perf_counter() - t0
    return stats


def _note_cells(modality: str, cells: list[tuple[int, Any]], keys: list[str | None],
                usable: set[str], max_seconds: float | None, workers: int, add,
                describe: Any = None) -> None:
    """`media_note` (the header check validate runs) of every usable file, cached or not, so the
    output says the same on every run: ``add(row index, item, note)`` for each cell with one.
    ``describe(item)``: the encoder's own ``media_note`` (which includes that check), if any."""
    first: dict[str, Any] = {}
    for (_, item), k in zip(cells, keys):
        if k in usable:
            first.setdefault(k, item)

    def note(item: Any) -> str | None:
        try:
            return describe(item) if describe else media_note(modality, item, max_seconds)
        except PolymodalError:  # changed since it was hashed; its vector stands
            return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        got = dict(zip(first, pool.map(note, first.values())))
    for (i, item), k in zip(cells, keys):
        if got.get(k):
            add(i, item, got[k])


def encode_manifest(manifest: str | Path | Manifest, out: str | Path,
                    encoders: dict[str, Any] | None = None, cache_dir: str | Path | None = None,
                    batch_size: int | None = None, workers: int = 2, progress: bool = True,
                    columns: dict[str, str] | None = None,
                    modalities: Sequence[str] | None = None) -> EncodeResult:
    """Encode ``modalities`` (default: every modality) of a manifest into ``out`` (see
    `FeatureSet` for the layout), reusing and filling the content-addressed cache in
    ``cache_dir``. ``encoders`` overrides the default encoder of the modalities it names.

    ``out`` is written as a unit (`feature_folder`): an encode that fails or is killed leaves
    the previous folder as it was, never a mix of old and new files."""
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, columns=columns)
    out = Path(out)
    check_replaceable(out)  # before any work: never replace a folder holding other things
    encs = resolve_encoders(manifest, encoders, modalities)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    threads = torch.get_num_threads()  # encoders use every core; restored below
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    skipped = [p for p in manifest.problems if p.level == "error"]
    warnings = [p for p in manifest.problems if p.level != "error"]
    notes: list[Problem] = []
    stats: dict[str, ModalityStats] = {}
    meta_mods: dict[str, dict] = {}
    collected = 0
    with feature_folder(out) as stage:  # becomes ``out`` once complete
        hasher = FileHasher(cache)
        try:
            for m, enc in encs.items():
                store = FeatureStore(cache, enc.id)
                collected += store.collected
                try:
                    bs = batch_size or getattr(enc, "batch_size", 32)
                    stats[m] = _encode_modality(manifest, m, enc, store, hasher, stage, bs,
                                                workers, progress, skipped, notes)
                finally:
                    store.close()
                meta_mods[m] = {"encoder": enc.id, "name": enc.name, "dim": int(enc.dim),
                                "count": stats[m].items - stats[m].skipped}
        finally:
            hasher.close()
            torch.set_num_threads(threads)
        skipped.sort(key=lambda p: (p.row or 0, p.column or ""))
        atomic_write_text(stage / "skipped.jsonl",
                          "".join(json.dumps(p.to_dict()) + "\n" for p in skipped))
        notes.sort(key=lambda p: (p.row or 0, p.column or ""))
        atomic_write_text(stage / "notes.jsonl",
                          "".join(json.dumps(p.to_dict()) + "\n" for p in notes))
        atomic_write_text(stage / "ids.json", json.dumps(manifest.ids))
        atomic_write_text(stage / "features.json", json.dumps({  # last: lists the others
            "manifest": str(manifest.path), "n_rows": len(manifest), "modalities": meta_mods,
            "columns": manifest.columns, "files": file_sizes(stage)}, indent=1))
    return EncodeResult(out=out, rows=len(manifest), stats=stats, skipped=skipped,
                        warnings=warnings, notes=notes, collected=collected)


def manifest_features(manifest: Manifest, modalities: Sequence[str], encoders: dict[str, str],
                      features: str | Path | None, out: Path, cache_dir: str | Path | None,
                      progress: bool = True, require: Sequence[str] = ()) -> FeatureSet:
    """Features of ``modalities`` for ``manifest``: the folder ``features`` (which must have been
    encoded from this manifest), else a cached encode into ``out/features`` with ``encoders``
    (defaults for the others). A clear error when the manifest lacks one of ``require`` (the
    columns the task needs, in this order) or of ``modalities``."""
    for m in dict.fromkeys([*require, *modalities]):
        if m not in manifest.modalities:
            raise UsageError(f"{manifest.path}: no {m} column "
                             f"(has {', '.join(manifest.modalities)})")
    if features:
        fs = FeatureSet.load(features)
        if fs.ids != manifest.ids:
            raise UsageError(f"{features} was not encoded from {manifest.path} (ids differ)")
        return fs
    extra = sorted(set(encoders) - set(modalities))
    if extra:
        raise UsageError(f"--encoder {extra[0]}=…: this task encodes only "
                         f"{', '.join(modalities)}")
    return encode_manifest(manifest, out / "features", encoders=encoders, cache_dir=cache_dir,
                           progress=progress, modalities=modalities).features


def encode(items: Any, encoder: str | Encoder = "minilm", modality: str | None = None,
           cache_dir: str | Path | None = None, batch_size: int | None = None) -> np.ndarray:
    """Vectors of texts or image / audio files through the content-addressed feature cache
    (``polymodal.encode``): one item -> ``[dim]``, a list -> ``[N, dim]`` float32.

    ``encoder``: a name (``minilm``, ``efficientnet-lite0``, ``logmel``, ``hf:<model>`` with
    ``modality``) or a built `Encoder`. Items already in the cache (same encoder id, same text
    or file bytes, e.g. encoded by ``polymodal encode``) are read from it, the others are
    encoded and stored; the values are the cache's (float16 precision), so they equal what a
    fit on the same items sees. A bad item raises a one-line `PolymodalError` naming it."""
    from polymodal.features.encoders.base import is_single

    single = is_single(items)
    batch = [items] if single else list(items)
    enc = build_encoder(encoder, modality=modality) if isinstance(encoder, str) else encoder
    if modality is not None and enc.modality != modality:
        raise UsageError(f"encoder '{enc.name}' encodes {enc.modality}, not {modality}")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    keys = _item_keys(batch, enc.modality, cache)
    files = enc.modality != "text"
    dim = int(enc.dim)
    store = FeatureStore(cache, enc.id)
    try:
        out, ok = store.fetch(keys, dim)  # verified; bad entries dropped and encoded again
        todo = {k: x for k, x, o in zip(keys, batch, ok) if not o}
        if todo:
            try:
                vec = np.asarray(enc.encode(list(todo.values()), batch_size=batch_size,
                                            numpy=True), np.float32)
            except BaseException:
                if files:  # a file that failed to decode is always hashed again
                    _forget(cache, todo.values())
                raise
            changed = [x for k, x in todo.items() if files and not _same_bytes(x, k)]
            if changed:
                _forget(cache, changed)
                raise PolymodalError(f"{enc.modality} file {changed[0]}: changed while it was "
                                     "being encoded; try again")
            with np.errstate(over="ignore"):
                bad = [x for x, v in zip(todo.values(), vec)
                       if not np.isfinite(v.astype(np.float16)).all()]
            if bad:
                raise PolymodalError(f"{enc.modality} {bad[0]}: encoder '{enc.name}' produced "
                                     "non-finite values")
            store.put(list(todo), vec)
            out, ok = store.fetch(keys, dim)
            if not ok.all():
                raise PolymodalError(f"{store.root}: cache entries failed verification right "
                                     "after they were written (a failing disk?); try again")
    finally:
        store.close()
    out = out.astype(np.float32)
    return out[0] if single else out


def _forget(cache: Path, paths: Any) -> None:
    hasher = FileHasher(cache)
    try:
        for p in paths:
            hasher.forget(Path(p))
    finally:
        hasher.close()


def _item_keys(items: Sequence[Any], modality: str, cache: Path) -> list[str]:
    """Cache keys (content digests) of texts or files, as `encode_manifest` computes them."""
    if modality == "text":
        for x in items:
            if not isinstance(x, str) or not x.strip():
                raise UsageError(f"text items must be non-empty strings, got {x!r}")
        return [text_digest(x) for x in items]
    hasher = FileHasher(cache)
    try:
        keys = []
        for x in items:
            try:
                check_file(x)  # DecodeError names the file: not regular, empty, too large
                keys.append(hasher.digest(Path(x)))
            except FileNotFoundError:
                raise PolymodalError(f"{modality} file not found: {x}") from None
            except (OSError, TypeError) as e:
                raise PolymodalError(f"cannot read {modality} file {x!r}: "
                                     f"{getattr(e, 'strerror', None) or e}") from None
        return keys
    finally:
        hasher.close()
