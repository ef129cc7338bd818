"""Micro-batching of concurrent searches.

Each ``/search`` (text) or ``/search/file`` (image / audio) request queues its query, then
waits for the model lock. Whoever holds the lock answers *every* query of its modality waiting
at that moment with one `Retriever.search` call (one encoding batch -- MiniLM encodes 32 texts
in about the time of a few single ones on a CPU -- and one index search); requests already
answered by an earlier batch return at once. Results equal single searches (scores up to float
rounding): the index is searched with the largest ``k`` in the batch and each request keeps its
own top ``k``. A query that fails the batch (a file that does not decode, a text the tokenizer
rejects: any error) makes the batch retry one query at a time, so only that request gets the
error and the others their hits. `SearchBatcher.submit` refuses texts that cannot be queries
(too long, lone surrogates, control characters) before they are queued.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from polymodal.core.errors import UsageError
from polymodal.serve.common import query_problem
from polymodal.tasks.retrieval.predict import Hit, RetrievalRun, Retriever


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
    """Queues of searches on one retrieval run (a `Retriever`, or a loaded `RetrievalRun`), one
    per query modality, answered in batches (see module doc)."""

    def __init__(self, model: Retriever | RetrievalRun, max_batch: int = 64):
        self.model = model if isinstance(model, Retriever) else Retriever(model)
        self.max_batch = max_batch
        self.queues: dict[str, list[Pending]] = {}
        self._plock = threading.Lock()

    @property
    def pending(self) -> list[Pending]:
        """Every queued, unanswered search."""
        with self._plock:
            return [p for q in self.queues.values() for p in q]

    def submit(self, query: str, k: int, modality: str = "text") -> Pending:
        """Check and queue one search: a text, or the path of an image / audio file (a
        `UsageError` for an empty, too long or invalid text, a modality the run does not align,
        or a bad ``k``)."""
        self.model.check(query, modality)
        problem = query_problem(query) if modality == "text" and isinstance(query, str) else None
        if problem:
            raise UsageError(f"text query: {problem}")
        self.model.check_k(k)
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
        t0 = time.perf_counter()
        try:
            hits = self.model.search([b.text for b in batch], max(b.k for b in batch),
                                     batch[0].modality)
        except Exception as e:
            if len(batch) > 1:  # e.g. one bad file: answer the others one by one
                for b in batch:
                    self._process([b])
                return
            batch[0].error, batch[0].done = e, True
            return
        ms = (time.perf_counter() - t0) * 1000
        for b, h in zip(batch, hits):
            b.hits, b.batch, b.search_ms, b.done = h[:b.k], len(batch), ms, True
