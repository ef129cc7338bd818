"""``concat:<encoder>+<encoder>[+…]``: one modality through several encoders, side by side.

The vector of an item is the concatenation of each part's vector, each scaled to unit L2
length first (``normalize=True``, the default: parts of very different scales — a transcript's
unit-length MiniLM vector next to Whisper's encoder states — then weigh alike; a head still
learns its own weights). Typical uses:

* the speech bridge as an **extra feature** for trained heads: ``--encoder
  audio=concat:whisper-tiny+asr:minilm`` (what the voice sounds like + what it says);
* a video's three inputs pooled into one: ``--encoder
  video=concat:frames:efficientnet-lite0+audio:whisper-tiny+audio:asr:minilm`` (frames, the
  audio track, and its transcript).

Every part decodes the item itself (`prepare`), so each gets the input it expects (sample rate,
frames); a bad file fails the row as it would for any part. The id names every part's id (the
feature cache keys the vectors by all of them). Like ``asr:``, the concatenation has no model of
its own: each part runs its own ``auto`` backend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from polymodal.core.errors import UsageError
from polymodal.features.encoders.base import encode_items


def split_parts(arg: str) -> list[str]:
    """``"a+b:c"`` -> ``["a", "b:c"]``; a one-line `UsageError` for fewer than two parts."""
    parts = [p.strip() for p in str(arg).split("+")]
    if len(parts) < 2 or not all(parts):
        raise UsageError(f"encoder 'concat:{arg}' needs two or more encoders joined by '+', "
                         "e.g. concat:whisper-tiny+asr:minilm")
    return parts


class ConcatEncoder:
    """Several encoders of one modality, their (unit-length) vectors concatenated."""

    backends: dict = {}  # no model of its own: each part runs its own auto backend

    def __init__(self, parts: str, modality: str | None = None,
                 cache_dir: str | Path | None = None, normalize: bool = True):
        from polymodal.features.encoders.registry import ENCODERS, build_encoder, \
            parse_encoder_name

        names = split_parts(parts)
        kinds = set()
        for n in names:
            entry, _ = parse_encoder_name(n)
            kinds.add(entry.metadata["modality"])
        fixed = kinds - {"any"}
        if len(fixed) > 1:
            raise UsageError(f"encoder 'concat:{parts}' joins encoders of different modalities "
                             f"({', '.join(sorted(fixed))}); all parts must encode one modality")
        self.modality = modality or (fixed.pop() if fixed else None)
        if self.modality is None:
            raise UsageError(f"encoder 'concat:{parts}' needs a modality "
                             f"(e.g. --encoder text=concat:{parts})")
        self.parts = []
        for n in names:
            opts = ENCODERS.options(parse_encoder_name(n)[0].name)
            kw = {"cache_dir": cache_dir} if cache_dir is not None and "cache_dir" in opts else {}
            self.parts.append(build_encoder(n, modality=self.modality, **kw))
        self.name = f"concat:{'+'.join(names)}"
        self.normalize = bool(normalize)
        self.dim = sum(int(p.dim) for p in self.parts)
        self.batch_size = min(int(getattr(p, "batch_size", 32) or 32) for p in self.parts)
        caps = [getattr(p, "max_seconds", None) for p in self.parts]
        caps = [c for c in caps if c is not None]
        if caps:  # the tightest part's limit is the concatenation's (checked once, here)
            self.max_seconds = min(caps)

    @property
    def id(self) -> str:
        # "|parts=N" last, so no part's "|backend=" suffix reads as the concatenation's own
        inner = ";".join(p.id for p in self.parts)
        return f"concat[{inner}]{'|l2' if self.normalize else ''}|parts={len(self.parts)}"

    def media_note(self, item: Any) -> str | None:
        """What each part's ``encode`` says about ``item`` (its own ``media_note``, else the
        header check ``validate`` runs), distinct notes joined; None without any."""
        from polymodal.data.loaders import media_note

        got = [p.media_note(item) if hasattr(p, "media_note")
               else media_note(self.modality, item, getattr(p, "max_seconds", None))
               for p in self.parts]
        return "; ".join(dict.fromkeys(g for g in got if g)) or None

    def prepare(self, item: Any) -> tuple:
        """Each part's own decoding of ``item`` (raises as the first failing part does)."""
        return tuple(p.prepare(item) for p in self.parts)

    def encode_prepared(self, batch: Sequence[tuple]) -> torch.Tensor:
        if not len(batch):
            return torch.empty(0, self.dim)
        cols = []
        for j, part in enumerate(self.parts):
            v = part.encode_prepared([b[j] for b in batch]).float()
            cols.append(torch.nn.functional.normalize(v, dim=-1) if self.normalize else v)
        return torch.cat(cols, dim=1)

    def encode(self, items: Any, batch_size: int | None = None, normalize: bool = False,
               numpy: bool = False) -> Any:
        return encode_items(self, items, batch_size, normalize, numpy)


__all__ = ["ConcatEncoder", "split_parts"]
