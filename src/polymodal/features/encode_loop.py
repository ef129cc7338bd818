"""Encoding one modality of a manifest: the loop behind `encode_manifest`.

Each cell (an image, an audio file, one caption) is keyed by encoder id + content digest. Cells
already in the feature store (and passing its verification) are copied, the rest are decoded in
a thread pool or in worker processes (``decode="processes"``: `decode_processes`, for encoders
whose ``preparer()`` is a picklable, torch-free callable), at most a few batches ahead of the
model (a bounded queue), encoded in batches and stored, each batch committed to the cache as it
is done.
Media files pass the same checks as ``validate`` (`check_file` before hashing, then the loaders'
header limits), with the same reasons; a bad cell is appended to ``skipped`` and the run goes on.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from polymodal.core.errors import DecodeError, Problem
from polymodal.data.cells import text_problem
from polymodal.data.loaders import check_file
from polymodal.data.manifest import Manifest
from polymodal.data.validate import media_label
from polymodal.features.cache.store import FeatureStore, FileHasher, text_digest
from polymodal.features.decode_pool import DEFAULT_DECODE, decode_cell, decode_processes
from polymodal.features.encode_output import WRITE_ROWS, write_matrix
from polymodal.features.encode_report import ModalityStats, note_cells
from polymodal.features.encoders import Encoder


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


def prepare_cell(encoder: Encoder, item: Any, key: str, root: Path | None
                 ) -> tuple[Any, str | None]:
    """``(decoded item, None)``, or ``(None, reason)`` for a cell that cannot be used, with
    the reason ``skipped.jsonl`` gives (files named as validate names them, relative to
    ``root``). Never raises: a batch job keeps going."""
    return decode_cell(encoder.prepare, encoder.modality, item, key, root)


# An engine other than the local thread pool: ``engine(encoder, cells, batch_size, root,
# commit, reject)`` decodes (`prepare_cell`) and encodes ``cells`` ([(key, item)], in order,
# batch_size at a time) and calls ``commit(keys, float32 vectors)`` for each batch and
# ``reject(key, reason)`` for each cell that cannot be used, in this process: the caller
# checks and caches the vectors (`polymodal.features.engines`).
EncodeEngine = Callable[[Encoder, list, int, "Path | None", Callable, Callable], None]


def encode_modality(manifest: Manifest, modality: str, encoder: Encoder, store: FeatureStore,
                    hasher: FileHasher, out: Path, batch_size: int, workers: int,
                    progress: bool, skipped: list[Problem], notes: list[Problem],
                    engine: EncodeEngine | None = None, decode: str = DEFAULT_DECODE
                    ) -> ModalityStats:
    """Encode the ``modality`` cells of ``manifest`` through ``store`` and write
    ``out/<modality>.npy`` + ``out/<modality>_rows.npy``; bad cells are appended to ``skipped``,
    cells used in part to ``notes``. ``engine``: who decodes and encodes the cells not in the
    cache (default: ``workers`` decoding threads here, or processes with ``decode="processes"``
    where the encoder has a ``preparer()``; `EncodeEngine`)."""
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
        return (k, *prepare_cell(encoder, todo[k], k, manifest.root))

    bar = tqdm(total=len(order), desc=f"encode {modality} ({encoder.name})", unit="item",
               disable=not progress or not order, dynamic_ncols=True)

    def commit(batch_keys: list[str], vec: np.ndarray) -> None:
        with np.errstate(over="ignore"):
            fine = np.isfinite(vec.astype(np.float16)).all(1)  # as the cache stores them
        for k, f in zip(batch_keys, fine):
            if not f:
                bad_keys[k] = "encoder produced non-finite values"
        # every batch is a checkpoint: committed to the cache now, so a killed encode keeps
        # all but the batch in flight and a re-run reuses them
        store.put([k for k, f in zip(batch_keys, fine) if f], vec[fine])
        bar.update(len(batch_keys))

    def reject(k: str, reason: str) -> None:
        bad_keys[k] = reason
        bar.update(1)

    def run_batch(batch: list[tuple[str, Any]]) -> None:
        with torch.inference_mode():
            vec = encoder.encode_prepared([x for _, x in batch]).float().cpu().numpy()
        commit([k for k, _ in batch], vec)

    def run_all(decoded: Iterator[tuple[str, Any, str | None]]) -> None:
        batch: list[tuple[str, Any]] = []
        for k, x, err in decoded:
            if err is not None:
                reject(k, err)
                continue
            batch.append((k, x))
            if len(batch) >= batch_size:
                run_batch(batch)
                batch = []
        if batch:
            run_batch(batch)

    preparer = getattr(encoder, "preparer", None)
    if engine is not None:  # another engine decodes and encodes; the cache is written here
        engine(encoder, [(k, todo[k]) for k in order], batch_size, manifest.root, commit, reject)
    elif decode == "processes" and preparer is not None and len(order) > 1:  # one cell: no pool
        run_all(decode_processes(preparer(), modality, [(k, todo[k]) for k in order],
                                 manifest.root, workers, depth=batch_size * 2))
    else:  # threads (also for encoders without a picklable preparer, e.g. text)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            run_all(_prefetch(pool, prepare, order, depth=batch_size * 4))
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
        note_cells(modality, cells, keys, set(where) - set(bad_keys),
                   getattr(encoder, "max_seconds", None), workers,
                   lambda i, item, note: notes.append(
                       Problem(fname, recs[i].row, col, f"{label(item)}: {note}", "warning")),
                   getattr(encoder, "media_note", None))  # audio encoders: + windows pooled
    write_matrix(out, modality, good, store, dim)
    stats.seconds = time.perf_counter() - t0
    return stats
