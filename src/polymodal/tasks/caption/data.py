"""Data side of captioning: the vocabulary, caption <-> ids, and the rows of a manifest that have
an encoded image and at least one caption (split by the shared policy, `polymodal.core.splits`;
checked before any encoding)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from polymodal.core.errors import PolymodalError
from polymodal.core.splits import assign_splits, check_split_counts
from polymodal.metrics.textgen import caption_tokens
from polymodal.nn.generative import BOS, EOS, PAD, SPECIALS, UNK
from polymodal.tasks.caption.config import CaptionConfig


def build_vocab(captions: Sequence[str], size: int, min_count: int) -> list[str]:
    """Specials + the ``size`` most frequent words seen at least ``min_count`` times."""
    counts = Counter(w for c in captions for w in caption_tokens(c))
    words = [w for w, n in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if n >= min_count]
    return list(SPECIALS) + words[:size]


def encode_caption(text: str, index: dict[str, int], max_len: int) -> list[int]:
    """<bos> word ids <eos> (unknown words -> <unk>, at most ``max_len`` words)."""
    return [BOS] + [index.get(w, UNK) for w in caption_tokens(text)[:max_len]] + [EOS]


def ids_to_text(ids: Sequence[int], vocab: Sequence[str]) -> str:
    return " ".join(vocab[i] for i in ids if i >= len(SPECIALS))


def _pad(seqs: list[list[int]]) -> torch.Tensor:
    t = torch.full((len(seqs), max(map(len, seqs))), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        t[i, :len(s)] = torch.tensor(s)
    return t


# ---------------------------------------------------------------- data
@dataclass
class CaptionData:
    feats: np.ndarray  # [N, F] one image vector per usable row
    captions: list[list[str]]  # all captions of each row
    splits: np.ndarray
    ids: list[str]
    images: list[str]
    encoder_name: str
    encoder_id: str

    def rows(self, split: str) -> np.ndarray:
        return np.where(self.splits == split)[0]


def load_caption_data(cfg: CaptionConfig, out: Path, progress: bool) -> CaptionData:
    """Rows with an image feature and at least one caption."""
    from polymodal.data.manifest import read_manifest
    from polymodal.features.encode import manifest_features

    man = read_manifest(cfg.manifest, columns=cfg.columns)
    if "image" in man.modalities:  # else manifest_features names the missing column
        rag = cfg.decoder == "rag"  # each train image reads k others: k + 1 at least
        check_split_counts(man.path, [r.split for r in man.records], man.ids,
                           np.array([r.image is not None and bool(r.text) for r in man.records]),
                           "an image and a caption" + (f", for --neighbours {cfg.neighbours}"
                                                       if rag else ""),
                           {"train": max(2, cfg.neighbours + 1) if rag else 2, "test": 1})
    fs = manifest_features(man, ["image"], cfg.encoders, cfg.features, out, cfg.cache_dir,
                           progress, require=["image", "text"], backend=cfg.backend,
                           precision=cfg.encoder_precision)
    x, present = fs.per_row("image")
    keep = [i for i, r in enumerate(man.records)
            if present[i] and r.text and any(caption_tokens(t) for t in r.text)]
    if not keep:
        raise PolymodalError(f"{cfg.manifest}: no row has both an encoded image and a caption")
    meta = fs.meta["modalities"]["image"]
    recs = [man.records[i] for i in keep]
    return CaptionData(feats=x[keep], captions=[[t for t in r.text if caption_tokens(t)]
                                                 for r in recs],
                       splits=assign_splits([r.split for r in recs], [r.id for r in recs]),
                       ids=[r.id for r in recs], images=[str(r.image) for r in recs],
                       encoder_name=meta.get("name") or meta["encoder"].split("|")[0],
                       encoder_id=meta["encoder"])
