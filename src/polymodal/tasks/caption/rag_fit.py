"""Training and test decoding of the ``rag`` caption decoder (`polymodal.nn.rag_captioner`):
teacher forcing on every caption of every train image, each image reading the captions of its
``neighbours`` nearest training images (itself and same-named twins left out), early stopping on
val CIDEr-D of greedy captions; then greedy, beam and consensus re-ranked beam captions of the
test split (the re-ranking weight is picked on val), plus Devlin et al.'s consensus nearest
neighbour as a second retrieval baseline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from polymodal.metrics.textgen import cider_d
from polymodal.nn.generative import UNK, build_captioner
from polymodal.nn.rag_captioner import rag_loss
from polymodal.tasks.caption.config import CaptionConfig
from polymodal.tasks.caption.data import CaptionData, _pad
from polymodal.tasks.caption.rag import (Consensus, NeighbourIndex, neighbour_inputs,
                                        neighbour_weights, pick_rerank, rag_candidates, rerank,
                                        target_ids)
from polymodal.train.loop import fit_loop


def rag_spec(cfg: CaptionConfig, feat_dim: int, vocab_size: int) -> dict:
    return {"kind": "rag", "feat_dim": feat_dim, "vocab_size": vocab_size,
            "embed_dim": cfg.embed_dim, "layers": cfg.layers, "heads": cfg.heads,
            "prefix": cfg.prefix, "neighbours": cfg.neighbours, "dropout": cfg.dropout,
            "max_len": cfg.max_len, "copy": cfg.copy_words}


def fit_rag(cfg: CaptionConfig, data: CaptionData, vocab: list[str], tr, va, te, out: Path,
            resume: bool, progress: bool, gen: torch.Generator):
    """``(model, index, fit result, {method: test captions}, extra metrics.json entries,
    re-ranking settings or None)``."""
    vi = {w: i for i, w in enumerate(vocab)}
    index = NeighbourIndex.build(data.feats[tr], [data.captions[i][0] for i in tr],
                                 [data.ids[i] for i in tr])
    k, L = cfg.neighbours, cfg.max_len

    def inputs(rows, leave_out: bool):
        idx, sims = index.search(data.feats[rows], k, [data.ids[i] for i in rows]
                                 if leave_out else None)
        return neighbour_inputs(index, idx, sims, vi, L)

    nb_tr, nb_va, nb_te = inputs(tr, True), inputs(va, bool(np.isin(va, tr).any())), \
        inputs(te, False)
    pairs = [(r, target_ids(c, vi, nb_tr.oov[r], L)) for r, i in enumerate(tr)
             for c in data.captions[i]]
    model = build_captioner(rag_spec(cfg, data.feats.shape[1], len(vocab)))
    feats = torch.from_numpy(np.ascontiguousarray(data.feats, np.float32))
    f_tr = feats[torch.as_tensor(tr)]
    bs = min(cfg.batch_size, len(pairs))

    def batches(epoch: int):
        perm = torch.randperm(len(pairs), generator=gen).tolist()
        for s in range(0, len(perm), bs):
            chunk = [pairs[j] for j in perm[s:s + bs]]
            rows = [p[0] for p in chunk]
            toks = _pad([p[1] for p in chunk])
            inp = toks[:, :-1].masked_fill(toks[:, :-1] >= len(vocab), UNK)
            yield (f_tr[rows], inp, toks[:, 1:], nb_tr.ids[rows], nb_tr.ext[rows],
                   nb_tr.sims[rows])

    def step(m: torch.nn.Module, batch) -> torch.Tensor:
        f, inp, tgt, ids, ext, sims = batch
        return rag_loss(m(f, inp, ids, ext, sims), tgt)

    val_refs = [data.captions[i] for i in va]

    def greedy(m, rows, nb) -> list[str]:
        return [c[0][0] for c in rag_candidates(m, data.feats[rows], nb, vocab, 1, L,
                                                cfg.no_repeat_ngram)]

    res = fit_loop(model, step, batches, lambda m: cider_d(greedy(m, va, nb_va), val_refs),
                   cfg.train.model_copy(update={"progress": cfg.train.progress and progress}),
                   run_dir=out, resume=resume, desc="fit rag captioner", generator=gen,
                   threads=cfg.threads)
    model.eval()
    hyps = {"greedy": greedy(model, te, nb_te)}
    bar = f"test beam {cfg.beam}" if progress and cfg.train.progress else None
    cands = rag_candidates(model, data.feats[te], nb_te, vocab, cfg.beam, L, cfg.no_repeat_ngram,
                           progress=bar)
    hyps[f"beam{cfg.beam}"] = [row[0][0] for row in cands]
    extra: dict = {"neighbours": k, "copy": cfg.copy_words,
                   "no_repeat_ngram": cfg.no_repeat_ngram}
    settings, consensus = None, Consensus(index.captions)
    if cfg.rerank and cfg.beam > 1:
        if cfg.rerank_weight is None or cfg.rerank_temperature is None:
            vc = rag_candidates(model, data.feats[va], nb_va, vocab, cfg.beam, L,
                                cfg.no_repeat_ngram, progress=bar and f"val beam {cfg.beam}")
            settings, grid = pick_rerank(vc, consensus(vc, nb_va.captions), nb_va.sims, val_refs)
            extra["rerank_val_cider"] = grid
        else:
            settings = {"length_power": 1.0}
        settings = {**settings, **{k: v for k, v in (("lp_weight", cfg.rerank_weight),
                                                     ("temperature", cfg.rerank_temperature))
                                   if v is not None}}
        hyps[f"beam{cfg.beam}+consensus"] = rerank(
            cands, consensus(cands, nb_te.captions),
            neighbour_weights(nb_te.sims, settings["temperature"]), settings["lp_weight"],
            settings["length_power"])
        extra["rerank"] = settings
    hyps["nn-consensus"] = consensus.nearest(nb_te.captions)
    return model, index, res, hyps, extra, settings
