"""Moments in videos: which frame of a retrieved clip matches the query, and training on
(word, frame) pairs.

A video target is indexed by its clip vector (the mean of its frame vectors). `FrameScorer`
embeds the run's per-frame vectors (``video_frames*.npy`` of its feature folder) with the
trained target head once, and for a query's shared-space vector and a hit's row returns the time
of the most similar frame: the hit's ``start_s``. `frame_word_pairs` adds (word, frame) training
pairs from a timing column (``fit retrieval --frame-pairs timing``); `evaluate_moments` measures
moment accuracy on a split (`polymodal.metrics.moments`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.core.errors import UsageError
from polymodal.data.manifest import Manifest
from polymodal.features.cache.features import FeatureSet


def _timing(rec, column: str) -> list[dict] | None:
    import json

    v = rec.extra.get(column)
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return None
    return v if isinstance(v, list) else None


def word_at(timing: list[dict], t: float) -> str | None:
    """The word whose image span holds time ``t``."""
    for e in timing:
        try:
            if float(e["image_start_s"]) <= t < float(e["image_end_s"]):
                return str(e["word"])
        except (KeyError, TypeError, ValueError):
            return None
    return None


def check_frame_pairs(cfg, manifest: Manifest) -> None:
    """Before any encoding: ``frame_pairs`` needs text and video sides and the column."""
    if not cfg.frame_pairs:
        return
    if {cfg.query, cfg.target} != {"text", "video"}:
        raise UsageError("--frame-pairs trains text <-> video runs only (got "
                         f"{cfg.query} -> {cfg.target})")
    if cfg.frame_pairs not in manifest.extra_columns:
        raise UsageError(f"--frame-pairs {cfg.frame_pairs}: {manifest.path} has no such column "
                         f"(extra columns: {', '.join(manifest.extra_columns) or 'none'})")


def frame_word_pairs(cfg, manifest: Manifest, feats: FeatureSet, data, encoders: dict[str, str],
                     qx: torch.Tensor, tx: torch.Tensor, qi: np.ndarray, tj: np.ndarray,
                     pair_groups: torch.Tensor):
    """Append (word vector, frame vector) pairs of the training clips to the training pairs;
    pairs of one word share a group (positives of each other for losses taking pair_ids)."""
    from polymodal.features.encode import encode

    fv, fr, ft = feats.frames("video")
    train = data.split == "train"
    words, fidx = [], []
    recs = manifest.records
    for j in np.flatnonzero(train[fr]):
        timing = _timing(recs[int(fr[j])], cfg.frame_pairs)
        w = word_at(timing, float(ft[j])) if timing else None
        if w:
            words.append(w)
            fidx.append(int(j))
    if not words:
        raise UsageError(f"--frame-pairs {cfg.frame_pairs}: no training frame falls inside a "
                         "timing span (expected a list of {word, image_start_s, image_end_s})")
    vocab = sorted(set(words))
    wv = torch.from_numpy(np.asarray(encode(vocab, encoder=encoders["text"], modality="text",
                                            cache_dir=cfg.cache_dir), np.float32))
    frames = torch.from_numpy(np.asarray(fv[fidx], np.float32))
    code = {w: i for i, w in enumerate(vocab)}
    widx = np.array([code[w] for w in words], np.int64)
    text_is_query = cfg.query == "text"
    tq, tt = (qx, tx) if text_is_query else (tx, qx)
    n_words, n_frames = len(tq), len(tt)
    tq, tt = torch.cat([tq, wv]), torch.cat([tt, frames])
    new_t = n_words + widx
    new_v = n_frames + np.arange(len(fidx), dtype=np.int64)
    base = int(data.groups.max()) + 1
    g = torch.cat([pair_groups, torch.from_numpy(base + widx)])
    if text_is_query:
        return tq, tt, np.concatenate([qi, new_t]), np.concatenate([tj, new_v]), g
    return tt, tq, np.concatenate([qi, new_v]), np.concatenate([tj, new_t]), g


class FrameScorer:
    """Per-frame target-side embeddings of a run's video features, for `best_time`."""

    def __init__(self, features: FeatureSet, model, side: str = "target",
                 modality: str = "video"):
        v, r, t = features.frames(modality)
        self.times = np.asarray(t, np.float32)
        order = np.argsort(r, kind="stable")
        self.rows, self.times = np.asarray(r)[order], self.times[order]
        self.emb = model.embed_numpy(np.asarray(v, np.float32)[order], side)
        self.starts = np.searchsorted(self.rows, np.arange(len(features.ids) + 1))
        self.row_of = {rid: i for i, rid in enumerate(features.ids)}

    def best_time(self, q: np.ndarray, row_id: str) -> tuple[float, float] | None:
        """(time in s, similarity) of the frame of ``row_id`` most similar to ``q``."""
        i = self.row_of.get(row_id)
        if i is None or self.starts[i] == self.starts[i + 1]:
            return None
        a, b = self.starts[i], self.starts[i + 1]
        s = self.emb[a:b] @ np.asarray(q, np.float32)
        k = int(np.argmax(s))
        return float(self.times[a + k]), float(s[k])


def run_feature_folder(root: Path, cfg) -> Path:
    return Path(cfg.features) if cfg.features else Path(root) / "features"


def evaluate_moments(retriever: Any, column: str = "timing", split: str = "test") -> dict:
    """Moment accuracy of a text -> video run on ``split``: for every (clip, distinct digit
    word) of the split, (a) ``global``: the word is searched over the whole index and counts as
    right when the top clip shows the word at the returned ``start_s``; (b) ``in_clip``: the
    best frame of that clip for the word lies inside a span of the word. -> figures."""
    from polymodal.core.splits import run_splits
    from polymodal.metrics.moments import moment_accuracy

    run = retriever.run
    if run.config.query != "text" or run.config.target != "video":
        raise UsageError("moment accuracy needs a text -> video run")
    splits = run_splits(run.root) or {}
    recs = [r for r in run.manifest.records if splits.get(r.id, r.split) == split]
    if not recs:
        raise UsageError(f"split '{split}' has no rows")
    scorer = retriever.frame_scorer
    queries, spans_in = [], []
    for r in recs:
        timing = _timing(r, column) or []
        for w in dict.fromkeys(e["word"] for e in timing):
            queries.append((r.id, w))
            spans_in.append([(e["image_start_s"], e["image_end_s"]) for e in timing
                             if e["word"] == w])
    words = sorted({w for _, w in queries})
    qv = dict(zip(words, retriever.embed(words, "text")))
    top = dict(zip(words, retriever.search(words, 1, "text")))
    by_id = retriever.by_id
    got_in, got_glob, spans_glob = [], [], []
    for (rid, w), sp in zip(queries, spans_in):
        bt = scorer.best_time(qv[w], rid)
        got_in.append(None if bt is None else bt[0])
        h = top[w][0]
        timing = _timing(by_id[h.row_id], column) or []
        got_glob.append(h.start_s)
        spans_glob.append([(e["image_start_s"], e["image_end_s"]) for e in timing
                           if e["word"] == w])
    return {"split": split, "queries": len(queries), "words": len(words),
            "in_clip": moment_accuracy(got_in, spans_in),
            "global": moment_accuracy(got_glob, spans_glob),
            "global_by_word": {w: moment_accuracy([top[w][0].start_s], [[
                (e["image_start_s"], e["image_end_s"]) for e in (_timing(
                    by_id[top[w][0].row_id], column) or []) if e["word"] == w]])
                for w in words}}
