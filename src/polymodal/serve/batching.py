"""Micro-batching of concurrent searches.

Each ``/search`` (text) or ``/search/file`` (image / audio) request queues its query, then
waits for the model lock. Whoever holds the lock encodes *every* query of its modality waiting
at that moment in one batch (MiniLM encodes 32 texts in about the time of a few single ones on
a CPU) and searches the index once for all of them; requests already answered by an earlier
batch return at once. Results equal single searches (scores up to float rounding): the index is
searched with the largest ``k`` in the batch and each request keeps its own top ``k``. A file
that does not decode fails the batch's encoding, so the batch is then retried one query at a
time and only that request gets the error.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from polymodal.core.errors import UsageError
from polymodal.tasks.retrieval.predict import Hit, RetrievalRun


@dataclass
class Pending:
    """One queued search (a text, or an image / audio file path) and, once answered, its hits
    (or the error)."""

    text: str
    k: int
    modality: str = "text"
    done: bool = False
    hits: list[Hit] = field(default_factory=list)
    error: BaseException | None = None
    batch: int = 0
    search_ms: float = 0.0


class SearchBatcher:
    """Queues of searches on one retrieval run, one per query modality, answered in batches
    (see module doc)."""

    def __init__(self, run: RetrievalRun, max_batch: int = 64):
        self.run, self.max_batch = run, max_batch
        self.by_id = {r.id: r for r in run.manifest.records}
        self.queues: dict[str, list[Pending]] = {}
        self._plock = threading.Lock()

    @property
    def pending(self) -> list[Pending]:
        """Every queued, unanswered search."""
        with self._plock:
            return [p for q in self.queues.values() for p in q]

    def submit(self, query: str, k: int, modality: str = "text") -> Pending:
        """Check and queue one search: a text, or the path of an image / audio file (a
        `UsageError` for an empty text, a modality the run does not align, or a bad ``k``)."""
        cfg, n = self.run.config, len(self.run.index)
        if modality not in (cfg.query, cfg.target):
            raise UsageError(f"this run aligns {cfg.query} and {cfg.target}; cannot search with "
                             f"{modality}")
        if not isinstance(query, str) or not query.strip():
            raise UsageError(f"empty {modality} query")
        if k <= 0 or k > n:
            raise UsageError(f"k={k} must be between 1 and the index size {n}")
        item = Pending(query, k, modality)
        with self._plock:
            self.queues.setdefault(modality, []).append(item)
        return item

    def result(self, item: Pending) -> Pending:
        """Answer ``item`` (call with the model lock held): process queued batches of its
        modality until it is done. Re-raises the error of its query."""
        while not item.done:
            with self._plock:
                queue = self.queues.get(item.modality, [])
                batch, self.queues[item.modality] = queue[:self.max_batch], queue[self.max_batch:]
            if not batch:  # cannot happen: item is queued until answered
                raise RuntimeError("search request lost from the queue")
            self._process(batch)
        if item.error is not None:
            raise item.error
        return item

    def _process(self, batch: list[Pending]) -> None:
        import torch

        from polymodal.core.errors import DecodeError, PolymodalError

        cfg = self.run.config
        m = batch[0].modality
        t0 = time.perf_counter()
        try:
            x = self.run.encoder(m).encode([b.text for b in batch]).float()
            with torch.inference_mode():
                q = self.run.model.embed(x, "query" if m == cfg.query else "target").numpy()
            scores, ids = self.run.index.search(q, max(b.k for b in batch))
        except DecodeError as e:
            if len(batch) > 1:  # one bad file: answer the others one by one
                for b in batch:
                    self._process([b])
                return
            batch[0].error = PolymodalError(f"query {m} {e.path}: {e.reason}")
            batch[0].done = True
            return
        except Exception as e:  # every request of the batch gets the error
            for b in batch:
                b.error, b.done = e, True
            return
        ms = (time.perf_counter() - t0) * 1000
        for j, b in enumerate(batch):
            b.hits = [self._hit(rank, float(s), str(i)) for rank, (s, i) in
                      enumerate(zip(scores[j][:b.k], ids[j][:b.k]), 1)]
            b.batch, b.search_ms, b.done = len(batch), ms, True

    def _hit(self, rank: int, score: float, vid: str) -> Hit:
        """A `Hit` built the way `search_run` builds it (``id#n`` vectors map to row ``id``)."""
        row_id = vid.rsplit("#", 1)[0] if vid not in self.by_id else vid
        rec, target = self.by_id.get(row_id), self.run.config.target
        item: Any = rec.get(target) if rec is not None else None
        path = str(item) if target in ("image", "audio") and item is not None else None
        text = " | ".join(rec.text) if rec is not None and rec.text else None
        return Hit(rank, vid, score, row_id, path, text)
