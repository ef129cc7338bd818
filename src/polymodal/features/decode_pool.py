"""Decoding the cells of an encode away from the model: `decode_cell` (one cell, never raises)
and `decode_processes` (worker processes, a bounded queue, crash-isolated). Torch-free, so a
decode process starts in a fraction of a second: it imports this module, the data loaders and
the encoder's ``preparer()`` (e.g. `polymodal.data.image_input.SquareInput`), never a model.
"""
from __future__ import annotations

import multiprocessing
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from polymodal.core.errors import DecodeError, PolymodalError, UsageError
from polymodal.data.validate import media_label
from polymodal.features.cache.files import file_digest

DECODE = ("threads", "processes")
DEFAULT_DECODE = "threads"
CRASHED = "the decoder crashed on this file (its decoding process died)"


def same_bytes(path: Any, key: str) -> bool:
    """Whether the file still holds the bytes its key was computed from: checked after it is
    decoded, so a vector is always stored under the digest of the bytes it was made from (a file
    changed since it was hashed must not give the old content's key a new vector)."""
    try:
        return file_digest(path) == key
    except OSError:
        return False


def decode_cell(prepare: Callable[[Any], Any], modality: str, item: Any, key: str,
                root: Path | None) -> tuple[Any, str | None]:
    """`prepare_cell` with the encoder's ``prepare`` (or its picklable ``preparer()``) given:
    what a decode process runs."""
    try:
        x = prepare(item)
        if modality != "text" and not same_bytes(item, key):
            return None, "the file changed during the encode (re-run to encode it)"
        return x, None
    except DecodeError as e:
        return None, f"{media_label(Path(item), root)}: {e.reason}"
    except PolymodalError as e:
        return None, getattr(e, "reason", str(e))
    except Exception as e:  # a batch job keeps going; report the cell
        return None, f"unexpected {type(e).__name__}: {e}"


def _decode_keyed(prepare: Callable, modality: str, key: str, item: Any, root: Path | None
                  ) -> tuple[str, Any, str | None]:
    return (key, *decode_cell(prepare, modality, item, key, root))


def _ready() -> int:
    return 0


def start_decode_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` decode processes (forkserver on Linux, else spawn: never a fork of a process
    that runs model threads), each checked to start. `UsageError` when they cannot: a new
    process imports ``__main__`` again, so a script must guard its work with
    ``if __name__ == "__main__":``, and ``python -`` cannot be imported at all."""
    ctx = multiprocessing.get_context("forkserver" if sys.platform == "linux" else "spawn")
    pool = ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx)
    try:
        for f in [pool.submit(_ready) for _ in range(max(1, workers))]:
            f.result(timeout=120)
    except Exception as e:
        pool.shutdown(wait=False, cancel_futures=True)
        raise UsageError(f"--decode processes: the decode processes did not start "
                         f"({type(e).__name__}; a script that encodes must run under "
                         f"'if __name__ == \"__main__\":'); use --decode threads") from None
    return pool


def decode_processes(prepare: Callable, modality: str, items: Sequence[tuple[str, Any]],
                     root: Path | None, workers: int, depth: int
                     ) -> Iterator[tuple[str, Any, str | None]]:
    """``(key, decoded, reason)`` for each ``(key, item)``, in order, decoded by `decode_cell`
    in ``workers`` processes (`start_decode_pool`) with at most ``depth`` cells in flight.
    A worker that dies (a decoder crash, the kernel's OOM killer) costs only its own file: the
    cells in flight are decoded again in a new pool, the first of them alone, and one that
    kills its process twice is reported with `CRASHED`."""
    pool = start_decode_pool(workers)
    it = iter(items)
    inflight: deque = deque()

    def submit(key: str, item: Any) -> None:
        inflight.append((key, item, pool.submit(_decode_keyed, prepare, modality, key, item,
                                                root)))

    def top_up() -> None:
        while len(inflight) < depth:
            nxt = next(it, None)
            if nxt is None:
                return
            submit(*nxt)

    try:
        top_up()
        while inflight:
            key, item, fut = inflight.popleft()
            try:
                res = fut.result()
            except BrokenProcessPool:
                rest = [(k, x) for k, x, _ in inflight]
                inflight.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = start_decode_pool(workers)
                try:  # alone: if it kills this pool too, it is the file that crashes
                    res = pool.submit(_decode_keyed, prepare, modality, key, item,
                                      root).result()
                except BrokenProcessPool:
                    res = (key, None, CRASHED)
                    pool.shutdown(wait=True)
                    pool = start_decode_pool(workers)
                for k, x in rest:
                    submit(k, x)
            top_up()
            yield res
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
