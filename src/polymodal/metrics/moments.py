"""Moment accuracy: does a predicted time fall inside a gold span?"""
from __future__ import annotations

from typing import Sequence


def in_spans(t: float | None, spans: Sequence[tuple[float, float]]) -> bool:
    """Whether time ``t`` lies in one of the half-open spans ``[start, end)`` (None: no)."""
    return t is not None and any(float(a) <= t < float(b) for a, b in spans)


def moment_accuracy(times: Sequence[float | None],
                    spans: Sequence[Sequence[tuple[float, float]]]) -> float:
    """Share of predictions ``times[i]`` inside ``spans[i]`` (a prediction of None, or a query
    whose hit has no span of the word, counts as wrong); 0.0 for no queries."""
    if len(times) != len(spans):
        raise ValueError(f"{len(times)} predictions but {len(spans)} span lists")
    if not times:
        return 0.0
    return sum(in_spans(t, s) for t, s in zip(times, spans)) / len(times)
