"""What an encode reports: counts per modality, the summary table, and the row notes.

Skipped cells (file, row, column, reason) go to ``skipped.jsonl``; cells used only in part
(audio longer than the encoder's ``max_seconds``, the first frame of an animated image, audio
pooled over windows) are notes, listed in ``notes.jsonl`` and in the summary. Both lists are
ordered by row, then column (`row_order`), so the output says the same on every run.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymodal.core.errors import PolymodalError, Problem
from polymodal.data.loaders import media_note
from polymodal.features.cache.features import FeatureSet


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


def row_order(p: Problem) -> tuple[int, str]:
    """Sort key of skipped cells and notes: by row, then column."""
    return (p.row or 0, p.column or "")


def note_cells(modality: str, cells: list[tuple[int, Any]], keys: list[str | None],
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
