"""Retrieval side of the ``rag`` caption decoder: the training-neighbour index (stored in the run
folder), the neighbour-caption tensors the decoder reads, extended (copy) ids, beam decoding and
consensus re-ranking (Devlin et al. 2015, "Exploring nearest neighbor approaches for image
captioning": pick the candidate most similar, by CIDEr-D, to the neighbours' captions).

Neighbours always come from the TRAIN split. A training image never sees itself nor a training
image with the same file name (the split is assigned by file name, so a test image never has
such a twin in train either: training sees the same kind of neighbours as test).

Run files: ``neighbours.safetensors`` (unit-norm float16 train image vectors; the same rounded
vectors serve fit and `polymodal caption`, so both find the same neighbours) and
``neighbours.json`` (their ids and first captions).
"""
from __future__ import annotations

import functools
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import PolymodalError
from polymodal.core.runfolder import RunFolder
from polymodal.metrics.textgen import caption_tokens, cider_pair, ngram_counts, tfidf_vector
from polymodal.nn.generative import BOS, EOS, PAD, UNK
from polymodal.nn.rag_captioner import rag_beam_decode

INDEX_WEIGHTS, INDEX_JSON = "neighbours.safetensors", "neighbours.json"


def _name(row_id: str) -> str:
    return str(row_id).replace("\\", "/").rsplit("/", 1)[-1]


@dataclass
class NeighbourIndex:
    unit: np.ndarray  # [N, F] float16, unit norm
    captions: list[str]  # first caption of each training image
    ids: list[str]

    @classmethod
    def build(cls, feats: np.ndarray, captions: Sequence[str], ids: Sequence[str]
              ) -> "NeighbourIndex":
        x = np.asarray(feats, np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
        return cls(x.astype(np.float16), list(captions), [str(i) for i in ids])

    def search(self, feats: np.ndarray, k: int, query_ids: Sequence[str] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(indices [Q, k], cosine [Q, k])`` most similar first. With ``query_ids`` (queries
        that are themselves training rows) the same id and the same file name are left out."""
        if k > len(self.ids) - (1 if query_ids is not None else 0):
            raise PolymodalError(f"--neighbours {k}: only {len(self.ids)} training images")
        t = torch.from_numpy(self.unit.astype(np.float32))
        q = np.asarray(feats, np.float32)
        q = torch.from_numpy(q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-8))
        q = q.half().float()  # the same rounding as the stored vectors
        by_name: dict[str, list[int]] = {}
        if query_ids is not None:
            for j, i in enumerate(self.ids):
                by_name.setdefault(_name(i), []).append(j)
        idx, sim = [], []
        for s in range(0, len(q), 1024):
            sims = q[s:s + 1024] @ t.T
            if query_ids is not None:
                for r, qid in enumerate(query_ids[s:s + 1024]):
                    sims[r, by_name.get(_name(qid), [])] = float("-inf")  # self included
            v, i = sims.topk(k, dim=1)
            idx.append(i.numpy())
            sim.append(v.numpy())
        return np.concatenate(idx), np.concatenate(sim)

    def save(self, out: Path, rerank: dict | None = None) -> None:
        """Write the index (and the consensus re-ranking settings, None = off) into a run."""
        RunFolder(out).save_weights({"unit": torch.from_numpy(self.unit)}, INDEX_WEIGHTS)
        atomic_write_text(out / INDEX_JSON, json.dumps(
            {"rerank": rerank, "ids": self.ids, "captions": self.captions},
            ensure_ascii=False))

    @classmethod
    def load(cls, run: Path) -> "NeighbourIndex":
        rf = RunFolder(run)
        unit = rf.load_weights(INDEX_WEIGHTS)["unit"].numpy()
        doc = rf.read_json(INDEX_JSON)
        if len(doc.get("captions", [])) != len(unit):
            raise PolymodalError(f"{run / INDEX_JSON}: {len(doc.get('captions', []))} captions "
                                 f"for {len(unit)} vectors in {INDEX_WEIGHTS}")
        return cls(unit, list(doc["captions"]), list(doc["ids"]))


def stored_rerank(run: Path) -> dict | None:
    return RunFolder(run).read_json(INDEX_JSON).get("rerank") or None


@dataclass
class NeighbourInputs:
    ids: torch.Tensor  # [Q, K, L] vocabulary ids of the neighbour captions (OOV = <unk>)
    ext: torch.Tensor  # [Q, K, L] extended ids (OOV = V + j)
    sims: torch.Tensor  # [Q, K]
    oov: list[list[str]]  # per query: its distinct OOV neighbour words, in id order
    captions: list[list[str]]  # per query: the K neighbour captions

    def rows(self, sel) -> "NeighbourInputs":
        sel = list(sel)
        return NeighbourInputs(self.ids[sel], self.ext[sel], self.sims[sel],
                               [self.oov[i] for i in sel], [self.captions[i] for i in sel])


def neighbour_inputs(index: NeighbourIndex, idx: np.ndarray, sims: np.ndarray,
                     vocab_index: dict[str, int], max_len: int) -> NeighbourInputs:
    q, k = idx.shape
    ids = torch.full((q, k, max_len), PAD, dtype=torch.long)
    ext = torch.full((q, k, max_len), PAD, dtype=torch.long)
    v = len(vocab_index)
    oovs, caps = [], []
    for r in range(q):
        oov: dict[str, int] = {}
        caps.append([index.captions[j] for j in idx[r]])
        for n, cap in enumerate(caps[-1]):
            for p, w in enumerate(caption_tokens(cap)[:max_len]):
                wid = vocab_index.get(w)
                if wid is None:
                    ids[r, n, p] = UNK
                    ext[r, n, p] = v + oov.setdefault(w, len(oov))
                else:
                    ids[r, n, p] = ext[r, n, p] = wid
        oovs.append(list(oov))
    return NeighbourInputs(ids, ext, torch.from_numpy(np.asarray(sims, np.float32)), oovs, caps)


def target_ids(caption: str, vocab_index: dict[str, int], oov: Sequence[str], max_len: int
               ) -> list[int]:
    """<bos> extended ids <eos>: a word outside the vocabulary is the copy id of the same
    neighbour word when there is one, else <unk>."""
    pos = {w: len(vocab_index) + j for j, w in enumerate(oov)}
    return ([BOS] + [vocab_index.get(w, pos.get(w, UNK)) for w in caption_tokens(caption)[:max_len]]
            + [EOS])


def ext_text(ids: Sequence[int], vocab: Sequence[str], oov: Sequence[str]) -> str:
    v = len(vocab)
    return " ".join(vocab[i] if i < v else oov[i - v] for i in ids if i >= 4)


def rag_candidates(model: torch.nn.Module, feats: np.ndarray, nb: NeighbourInputs,
                   vocab: Sequence[str], beam: int, max_len: int, no_repeat_ngram: int,
                   batch: int = 128, progress: str | None = None
                   ) -> list[list[tuple[str, float, int]]]:
    """Every final beam of each image: ``(caption, summed log-prob, words)``, best first
    (``progress``: a progress bar with that title)."""
    from tqdm.auto import tqdm

    out: list[list[tuple[str, float, int]]] = []
    for s in tqdm(range(0, len(feats), batch), desc=progress, unit="batch",
                  disable=progress is None, leave=False):
        sl = slice(s, s + batch)
        f = torch.from_numpy(np.ascontiguousarray(feats[sl], np.float32))
        res = rag_beam_decode(model, f, nb.ids[sl], nb.ext[sl], nb.sims[sl],
                              [len(o) for o in nb.oov[sl]], beam, max_len, no_repeat_ngram)
        for row, oov in zip(res, nb.oov[sl]):
            out.append([(ext_text(ids, vocab, oov), lp, max(1, len(ids))) for ids, lp in row])
    return out


class Consensus:
    """CIDEr-D between a candidate and an image's neighbour captions, with document
    frequencies from the training captions (fixed, so one image is scored as in a batch)."""

    def __init__(self, train_captions: Sequence[str], n_max: int = 4):
        self.n_max = n_max
        self.df: Counter = Counter()
        for c in train_captions:
            self.df.update(set(ngram_counts(caption_tokens(c), n_max)))
        self.log_n = math.log(max(2.0, float(len(train_captions))))
        self._vec = functools.lru_cache(maxsize=50_000)(self._tfidf)

    def _tfidf(self, text: str):
        return tfidf_vector(ngram_counts(caption_tokens(text), self.n_max), self.df, self.log_n,
                            self.n_max)

    def score(self, hyp: str, refs: Sequence[str]) -> np.ndarray:
        """CIDEr-D of ``hyp`` against each reference alone ``[len(refs)]``."""
        vh = self._vec(hyp)
        out = np.array([cider_pair(vh, self._vec(r)) for r in refs], dtype=float)
        return out / self.n_max * 10.0

    def __call__(self, cands: list[list[tuple[str, float, int]]], nb_caps: list[list[str]]
                 ) -> list[np.ndarray]:
        """Per image ``[candidates, K]``: each candidate's CIDEr-D with each neighbour caption."""
        return [np.stack([self.score(c[0], caps) for c in row]) for row, caps in
                zip(cands, nb_caps)]

    def nearest(self, nb_caps: list[list[str]]) -> list[str]:
        """Devlin et al.'s consensus nearest neighbour: of the K neighbour captions, the one
        with the highest mean CIDEr-D with the other K - 1."""
        out = []
        for caps in nb_caps:
            m = np.stack([self.score(c, caps) for c in caps])
            np.fill_diagonal(m, 0.0)
            out.append(caps[int(np.argmax(m.sum(1)))])
        return out


def neighbour_weights(sims: torch.Tensor, temperature: float) -> np.ndarray:
    """``softmax(cosine / temperature)`` over each image's neighbours (large: a plain mean)."""
    return torch.softmax(sims.float() / temperature, -1).numpy()


def rerank(cands: list[list[tuple[str, float, int]]], matrices: list[np.ndarray],
           weights: np.ndarray, lp_weight: float, length_power: float = 1.0) -> list[str]:
    """Per image the candidate maximising ``sum_j w_j CIDEr-D(c, neighbour_j) + lp_weight *
    log-prob / words ** length_power`` (a huge ``lp_weight`` with power 0: the plain beam)."""
    out = []
    for row, m, w in zip(cands, matrices, weights):
        lp = np.array([c[1] / c[2] ** length_power for c in row])
        out.append(row[int(np.argmax(m @ w + lp_weight * lp))][0])
    return out


LP_GRID = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 1e4)
TEMP_GRID = (0.01, 0.03, 0.1, 1e4)


def pick_rerank(cands, matrices, sims: torch.Tensor, refs) -> tuple[dict, dict[str, float]]:
    """The re-ranking settings (log-prob weight, neighbour temperature) with the best
    CIDEr-D on validation, and the CIDEr-D of every setting tried."""
    from polymodal.metrics.textgen import cider_d

    scores = {}
    for t in TEMP_GRID:
        w = neighbour_weights(sims, t)
        for lp in LP_GRID:
            for a in (0.0, 1.0):
                hyp = rerank(cands, matrices, w, lp, a)
                scores[f"lp={lp},t={t},len^{a}"] = (round(cider_d(hyp, refs), 4), lp, t, a)
    best = max(scores.values(), key=lambda v: v[0])
    return ({"lp_weight": best[1], "temperature": best[2], "length_power": best[3]},
            {k: v[0] for k, v in scores.items()})


def rag_caption(model: torch.nn.Module, feats: np.ndarray, index: NeighbourIndex,
                vocab: Sequence[str], config: dict, beam: int, settings: dict | None,
                query_ids: Sequence[str] | None = None) -> tuple[list[str], NeighbourInputs]:
    """Captions of image vectors with a rag run: neighbours from ``index``, beam search, then
    (``settings`` = `pick_rerank`'s, and beam > 1) consensus re-ranking; else the top beam."""
    vi = {w: i for i, w in enumerate(vocab)}
    idx, sims = index.search(feats, int(config["neighbours"]), query_ids)
    nb = neighbour_inputs(index, idx, sims, vi, int(config["max_len"]))
    cands = rag_candidates(model, feats, nb, vocab, beam, int(config["max_len"]),
                           int(config.get("no_repeat_ngram", 0)))
    if not settings or beam < 2:
        return [row[0][0] for row in cands], nb
    w = neighbour_weights(nb.sims, settings["temperature"])
    return rerank(cands, Consensus(index.captions)(cands, nb.captions), w,
                  settings["lp_weight"], settings.get("length_power", 1.0)), nb
