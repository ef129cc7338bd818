"""Emergent binding (ImageBind's idea, on frozen encoder features): align every modality to one
pivot modality with its own pairs, then use the composed space for pairs never seen together.

``fit retrieval --pivot image --pairs audio-image,text-image --query audio --target text``
trains one head per modality (audio, text and the pivot image) with a contrastive loss on
audio–image and text–image pairs only; the run's model is the audio head (query) and the text
head (target), so search / eval / serve work unchanged. By construction no audio–text pair is
trained on: the training rows are split into disjoint sets, one per pair (a hash of the row id),
so no row lends two of its modalities to two different pairs, and early stopping scores each
pair's val pairs (X -> pivot mAP), never a query–target pair. ``RUN/binding.json`` records the
pairs and the training row ids of each.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polymodal.core.errors import PolymodalError, UsageError
from polymodal.core.runfolder import RunFolder
from polymodal.core.splits import unit_hash
from polymodal.nn.dual_encoder import AlignModel
from polymodal.nn.heads import build_head
from polymodal.objectives.losses import get_loss, loss_params
from polymodal.objectives.registry import ALIGNMENTS
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.data import PairedData, load_pairs
from polymodal.train import dist
from polymodal.train.loop import fit_loop, seed_everything

DEFAULT_LOSS = "infonce"


def parse_pairs(cfg: RetrievalConfig) -> list[tuple[str, str]]:
    """``"audio-image,text-image"`` -> ``[("audio", "image"), ("text", "image")]`` (X, pivot)."""
    out = []
    for part in (cfg.pairs or "").split(","):
        a, sep, b = part.strip().partition("-")
        if not sep or not a or not b:
            raise UsageError(f"--pairs {cfg.pairs}: each pair is X-{cfg.pivot or 'PIVOT'}, "
                             "comma-separated (e.g. audio-image,text-image)")
        if cfg.pivot not in (a, b) or a == b:
            raise UsageError(f"--pairs {part.strip()}: every pair includes the pivot "
                             f"'{cfg.pivot}' and one other modality")
        out.append((b if a == cfg.pivot else a, cfg.pivot))
    return out


def check_binding(cfg: RetrievalConfig) -> None:
    """Before any encoding: --pivot and --pairs together, pairs of the form X-PIVOT, and
    query and target each reached by a pair (or the pivot itself)."""
    if not cfg.pivot or not cfg.pairs:
        raise UsageError("emergent binding needs both --pivot and --pairs (e.g. --pivot image "
                         "--pairs audio-image,text-image)")
    reach = {m for m, _ in parse_pairs(cfg)} | {cfg.pivot}
    for m in (cfg.query, cfg.target):
        if m not in reach:
            raise UsageError(f"--pairs {cfg.pairs}: no pair aligns '{m}' to the pivot "
                             f"'{cfg.pivot}' (add {m}-{cfg.pivot})")
    if binding_loss(cfg) is None:
        raise UsageError(f"--pairs: binding trains heads with a contrastive loss, not "
                         f"'{cfg.loss}' (use infonce, siglip, triplet or contrastive)")


def binding_loss(cfg: RetrievalConfig) -> str | None:
    """The contrastive loss binding trains with: ``cfg.loss``, ``infonce`` for ``auto``,
    None for a method that is not a pairwise loss of two heads."""
    if cfg.loss == "auto":
        return DEFAULT_LOSS
    return cfg.loss if ALIGNMENTS.get(cfg.loss).metadata.get("kind") == "loss" else None


def disjoint_rows(data: dict[tuple[str, str], PairedData]) -> dict[tuple[str, str], set[int]]:
    """Training rows of each pair, disjoint: a row usable by several pairs goes to one of them
    (a hash of its id), so no row lends two modalities to two pairs."""
    eligible: dict[int, list[tuple[str, str]]] = {}
    for p, d in data.items():
        for r in set(d.query.rows[d.pairs("train")[0]].tolist()):
            eligible.setdefault(int(r), []).append(p)
    ids = next(iter(data.values())).ids
    rows = sorted(eligible)
    u = unit_hash([ids[r] for r in rows], "binding")
    out: dict[tuple[str, str], set[int]] = {p: set() for p in data}
    for r, x in zip(rows, u):
        ps = eligible[r]
        out[ps[int(x * len(ps))]].add(r)
    return out


class BindModel(nn.Module):
    """One head per modality into one space, the pivot's included, plus each pair's scalars."""

    def __init__(self, specs: dict[str, dict], means: dict[str, torch.Tensor],
                 scalars: dict[str, dict[str, float]]):
        super().__init__()
        self.heads = nn.ModuleDict({m: build_head(**sp) for m, sp in specs.items()})
        for m, v in means.items():
            self.register_buffer(f"mean_{m}", v.float())
        self.scalars = nn.ModuleDict({p: nn.ParameterDict({k: nn.Parameter(torch.tensor(v))
                                                           for k, v in s.items()})
                                      for p, s in scalars.items()})

    def embed(self, x: torch.Tensor, m: str) -> torch.Tensor:
        return F.normalize(self.heads[m](x - getattr(self, f"mean_{m}")), dim=-1)


def fit_binding(cfg: RetrievalConfig, feats, manifest, data: PairedData, out: Path,
                resume: bool = False) -> tuple[RetrievalConfig, AlignModel, dict]:
    """Train every modality's head against the pivot (module doc); returns the run's config
    (``loss`` = the loss used), the query/target AlignModel and the train info."""
    from polymodal.metrics.scores import retrieval_metrics

    pairs = parse_pairs(cfg)
    splits = dict(zip(data.ids, data.split))
    pdata = {p: load_pairs(feats, manifest, p[0], p[1], cfg.relevance, splits) for p in pairs}
    rows = disjoint_rows(pdata)
    loss = binding_loss(cfg)
    fn, accepts = get_loss(loss), set(ALIGNMENTS.options(loss))
    fixed = {"margin": cfg.margin} if "margin" in accepts else {}
    gen = seed_everything(cfg.train.seed)
    train_idx, xs, means, dims = {}, {}, {}, {}
    for p, d in pdata.items():
        qi, tj = d.pairs("train")
        keep = np.isin(d.query.rows[qi], list(rows[p]))
        if keep.sum() < 2:
            raise PolymodalError(f"--pairs {p[0]}-{p[1]}: fewer than 2 training pairs")
        train_idx[p] = (qi[keep], tj[keep])
        for side, idx in ((d.query, qi[keep]), (d.target, tj[keep])):
            xs[side.modality] = side.x
            dims[side.modality] = side.x.shape[1]
            means.setdefault(side.modality, []).append(side.x[idx])
    opts = {"normalize": False, **({"hidden": cfg.hidden, "dropout": cfg.dropout}
                                   if cfg.head == "mlp" else {})}
    specs = {m: {"kind": cfg.head, "in_dim": d, "out_dim": cfg.dim, **opts}
             for m, d in dims.items()}
    model = BindModel(specs, {m: torch.from_numpy(np.concatenate(v).mean(0))
                              for m, v in means.items()},
                      {f"{a}-{b}": loss_params(loss) for a, b in pairs})
    tx = {m: torch.from_numpy(np.array(x, np.float32)) for m, x in xs.items()}
    bs = min([cfg.batch_size] + [len(i[0]) for i in train_idx.values()])
    n_steps = max(len(i[0]) for i in train_idx.values()) // bs

    def batches(epoch: int):
        perms = {p: torch.randperm(len(i[0]), generator=gen).numpy() for p, i in train_idx.items()}
        for s in range(n_steps):
            out_b = []
            for p, (qi, tj) in train_idx.items():
                perm = perms[p]
                idx = perm[(np.arange(bs) + s * bs) % len(perm)]
                d = pdata[p]
                out_b.append((tx[p[0]][qi[idx]], tx[p[1]][tj[idx]],
                              torch.from_numpy(d.groups[d.query.rows[qi[idx]]])))
            yield out_b

    def step(m: BindModel, batch) -> torch.Tensor:
        total = 0.0
        for (a, b), (xa, xb, g) in zip(train_idx, batch):
            ea = dist.gather(m.embed(dist.shard(xa), a))
            eb = dist.gather(m.embed(dist.shard(xb), b))
            kw = {**fixed, **dict(m.scalars[f"{a}-{b}"].items())}
            if "pair_ids" in accepts:
                kw["pair_ids"] = g
            total = total + fn(ea, eb, **kw)
        return total / len(train_idx)

    def validate(m: BindModel) -> float:  # each pair's own val pairs: X -> pivot mAP
        m.eval()
        scores = []
        with torch.inference_mode():
            for (a, b), d in pdata.items():
                q, t = d.side_split(d.query, "val"), d.side_split(d.target, "val")
                if len(q.x) and len(t.x):
                    qa = m.embed(torch.from_numpy(q.x), a).numpy()
                    tb = m.embed(torch.from_numpy(t.x), b).numpy()
                    scores.append(retrieval_metrics(qa @ tb.T, d.relevance(q, t))["mAP"])
        m.train()
        return float(np.mean(scores)) if scores else 0.0

    res = fit_loop(model, step, batches, validate, cfg.train, run_dir=out, resume=resume,
                   desc=f"bind {','.join(f'{a}-{b}' for a, b in pairs)} ({loss})",
                   generator=gen)
    sides = {"query": cfg.query, "target": cfg.target}
    align = AlignModel({s: specs[m] for s, m in sides.items()},
                       {s: getattr(model, f"mean_{m}") for s, m in sides.items()}, {})
    for s, m in sides.items():
        align.heads[s].load_state_dict(model.heads[m].state_dict())
    record = {"pivot": cfg.pivot, "loss": loss, "query": cfg.query, "target": cfg.target,
              "pairs": {f"{a}-{b}": sorted(data.ids[r] for r in rows[(a, b)])
                        for a, b in pairs}}
    if dist.is_main():
        RunFolder(out).write_json("binding.json", record)
    info = {"best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
            "val_pivot_mAP": res.best_score, "train_seconds": round(res.seconds, 2),
            "pairs": {k: len(v) for k, v in record["pairs"].items()}}
    return cfg.model_copy(update={"loss": loss}), align, info
