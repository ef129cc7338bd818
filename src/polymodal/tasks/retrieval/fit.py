"""Cross-modal retrieval: align two modalities in one space, index the targets, evaluate.

``fit_retrieval(config, out)`` encodes the manifest (cached), trains projection heads with the
chosen loss (or fits linear CCA), evaluates on the test split against ridge / CCA baselines and
chance, builds an index of the target modality and writes a run folder::

    RUN/config.yaml  RUN/model.safetensors  RUN/metrics.json  RUN/baselines.json
    RUN/index/  RUN/targets.jsonl  RUN/features/  RUN/train_log.csv
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from pydantic import BaseModel, Field
from torch import nn

from polymodal.nn.heads import build_head
from polymodal.objectives.losses import LOSSES, PAIR_ID_LOSSES, loss_params
from polymodal.core.atomic import atomic_path, atomic_write_text
from polymodal.features.cache.features import FeatureSet
from polymodal.data.manifest import read_manifest
from polymodal.features.encoders import DEFAULT_ENCODERS
from polymodal.core.errors import PolymodalError, UsageError
from polymodal.features.encode import encode_manifest
from polymodal.tasks.retrieval.data import PairedData, Side, load_pairs
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.train.config import TrainConfig
from polymodal.train.loop import fit_loop, seed_everything

Modality = Literal["text", "image", "audio"]
ALIGNERS = ("dcca", "autoencoder")  # fitted by their own .fit, wrapped as the model's aligner
METHODS = tuple(LOSSES) + ("cca",) + ALIGNERS
REGRESSION = ("mse", "cosine")


def _build_aligner(spec: dict) -> nn.Module:
    from polymodal.nn.autoencoder import MultimodalAutoencoder
    from polymodal.objectives.cca import DeepCCA

    kw = {k: v for k, v in spec.items() if k != "kind"}
    return DeepCCA(**kw) if spec["kind"] == "dcca" else MultimodalAutoencoder(**kw)


class AlignModel(nn.Module):
    """Two projection heads into one space (+ learnable loss scalars). Inputs are centred with
    the training means. A head spec ``{"kind": "identity"}`` keeps that side's features; a spec
    ``"aligner"`` (deep CCA or autoencoder) maps both sides instead of the heads."""

    def __init__(self, specs: dict[str, dict], means: dict[str, torch.Tensor],
                 scalars: dict[str, float]):
        super().__init__()
        self.specs = specs
        self.heads = nn.ModuleDict({s: (nn.Identity() if sp["kind"] == "identity" else
                                        build_head(**sp)) for s, sp in specs.items()
                                    if s in ("query", "target")})
        self.aligner = _build_aligner(specs["aligner"]) if "aligner" in specs else None
        for s, m in means.items():
            self.register_buffer(f"mean_{s}", m.float())
        self.scalars = nn.ParameterDict({k: nn.Parameter(torch.tensor(float(v)))
                                         for k, v in scalars.items()})

    def embed(self, x: torch.Tensor, side: str) -> torch.Tensor:
        """L2-normalised shared-space vectors for ``side`` ("query" or "target")."""
        if isinstance(self.aligner, nn.Module) and self.specs["aligner"]["kind"] == "dcca":
            fn = self.aligner.transform_x if side == "query" else self.aligner.transform_y
            return F.normalize(torch.from_numpy(np.asarray(fn(x.numpy()), np.float32)), dim=-1)
        if self.aligner is not None:
            return self.aligner.embed(x, side)
        y = self.heads[side](x - getattr(self, f"mean_{side}"))
        return F.normalize(y, dim=-1)

    def embed_numpy(self, x: np.ndarray, side: str, batch: int = 8192) -> np.ndarray:
        self.eval()
        outs = []
        with torch.inference_mode():
            for s in range(0, len(x), batch):
                outs.append(self.embed(torch.from_numpy(np.asarray(x[s:s + batch], np.float32)),
                                       side).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)


def _build_model(cfg: RetrievalConfig, data: PairedData) -> AlignModel:
    dq, dt = data.query.x.shape[1], data.target.x.shape[1]
    means = {"query": torch.from_numpy(data.side_split(data.query, "train").x.mean(0)),
             "target": torch.from_numpy(data.side_split(data.target, "train").x.mean(0))}
    opts = {"normalize": False}
    if cfg.head == "mlp":
        opts.update(hidden=cfg.hidden, dropout=cfg.dropout)
    if cfg.loss in REGRESSION:  # regress the query onto the fixed target features
        specs = {"query": {"kind": cfg.head, "in_dim": dq, "out_dim": dt, **opts},
                 "target": {"kind": "identity", "in_dim": dt}}
    elif cfg.loss in ALIGNERS:
        # deep CCA whitens each batch: it needs (well) more pairs per batch than components
        k_dcca = max(2, min(cfg.dim, cfg.batch_size // 2, len(data.pairs("train")[0]) // 8))
        specs = {"query": {"kind": "identity", "in_dim": dq},
                 "target": {"kind": "identity", "in_dim": dt},
                 "aligner": ({"kind": "dcca", "x_dim": dq, "y_dim": dt, "out_dim": k_dcca,
                              "hidden": [cfg.hidden]} if cfg.loss == "dcca" else
                             {"kind": "autoencoder", "dims": {"query": dq, "target": dt},
                              "latent_dim": cfg.dim, "hidden": cfg.hidden})}
    elif cfg.loss == "cca":  # more components than ~n/8 pairs only fit noise
        k = max(2, min(cfg.dim, dq, dt, len(data.pairs("train")[0]) // 8))
        specs = {s: {"kind": "linear", "in_dim": d, "out_dim": k, "normalize": False}
                 for s, d in (("query", dq), ("target", dt))}
    else:
        specs = {s: {"kind": cfg.head, "in_dim": d, "out_dim": cfg.dim, **opts}
                 for s, d in (("query", dq), ("target", dt))}
    scalars = loss_params(cfg.loss) if cfg.loss in LOSSES else {}
    return AlignModel(specs, means, scalars)


def _loss_fn(cfg: RetrievalConfig):
    fn = LOSSES[cfg.loss]

    def step(model: AlignModel, batch) -> torch.Tensor:
        q, t, g = batch
        a, b = model.embed(q, "query"), model.embed(t, "target")
        kw = {k: v for k, v in model.scalars.items()}
        if cfg.loss in PAIR_ID_LOSSES:
            kw["pair_ids"] = g
        if cfg.loss.startswith("triplet") or cfg.loss == "contrastive":
            kw["margin"] = cfg.margin
        return fn(a, b, **kw)
    return step


def similarity(model: AlignModel, q: Side, t: Side) -> tuple[np.ndarray, np.ndarray]:
    """Shared-space embeddings of query and target vectors."""
    return model.embed_numpy(q.x, "query"), model.embed_numpy(t.x, "target")


def evaluate_sides(qe: np.ndarray, te: np.ndarray, relevant: np.ndarray, names: tuple[str, str]
                   ) -> dict[str, dict[str, float]]:
    """Metrics in both directions for embedded query/target vectors."""
    from polymodal.metrics.scores import retrieval_metrics

    sim = qe @ te.T
    return {f"{names[0]}->{names[1]}": retrieval_metrics(sim, relevant),
            f"{names[1]}->{names[0]}": retrieval_metrics(sim.T, relevant.T)}


def _fit_cca(model: AlignModel, data: PairedData, cfg: RetrievalConfig) -> None:
    from polymodal.objectives.cca import LinearCCA

    qi, tj = data.pairs("train")
    k = model.heads["query"].spec["out_dim"]
    cca = LinearCCA(n_components=k).fit(data.query.x[qi], data.target.x[tj])
    for side, w, mean in (("query", cca.x_weights_, cca.x_mean_),
                          ("target", cca.y_weights_, cca.y_mean_)):
        lin = model.heads[side].proj
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.asarray(w, np.float32).T))
            getattr(model, f"mean_{side}").copy_(torch.from_numpy(np.asarray(mean, np.float32)))
            lin.bias.zero_()


def _fit_aligner(model: AlignModel, data: PairedData, cfg: RetrievalConfig) -> dict:
    """Deep CCA / autoencoder: fitted by their own ``fit`` on the training pairs."""
    qi, tj = data.pairs("train")
    X, Y = data.query.x[qi], data.target.x[tj]
    t0 = time.perf_counter()
    tc = cfg.train
    if cfg.loss == "dcca":
        model.aligner.fit(X, Y, epochs=tc.epochs, batch_size=cfg.batch_size, lr=tc.lr,
                          seed=tc.seed)
    else:
        model.aligner.fit({"query": X, "target": Y}, epochs=tc.epochs,
                          batch_size=cfg.batch_size, lr=tc.lr, seed=tc.seed)
    return {"epochs_run": tc.epochs, "train_seconds": round(time.perf_counter() - t0, 2)}


def baselines(data: PairedData, names: tuple[str, str]) -> dict[str, dict]:
    """Ridge regression, linear CCA (on the same features) and chance on the test split."""
    from polymodal.metrics.baselines import CCAMap, RidgeMap
    from polymodal.metrics.scores import chance_retrieval

    qi, tj = data.pairs("train")
    q, t = data.side_split(data.query, "test"), data.side_split(data.target, "test")
    rel = data.relevance(q, t)
    out = {}
    for name, m in (("ridge", RidgeMap()), ("cca", CCAMap())):
        m.fit(data.query.x[qi], data.target.x[tj])
        sim = m.score(q.x, t.x)
        out[name] = {f"{names[0]}->{names[1]}": _metrics(sim, rel),
                     f"{names[1]}->{names[0]}": _metrics(sim.T, rel.T)}
    out["chance"] = {f"{names[0]}->{names[1]}": chance_retrieval(rel),
                     f"{names[1]}->{names[0]}": chance_retrieval(rel.T)}
    return out


def _metrics(sim: np.ndarray, rel: np.ndarray) -> dict[str, float]:
    from polymodal.metrics.scores import retrieval_metrics

    return retrieval_metrics(sim, rel)


def load_encoded(cfg: RetrievalConfig) -> FeatureSet:
    """The pre-encoded folder ``cfg.features``; its encoders must be the ones ``cfg`` asks for
    (the run records them so that ``search`` encodes queries the same way)."""
    feats = FeatureSet.load(cfg.features)
    for m in (cfg.query, cfg.target):
        if m not in feats.modalities:
            raise UsageError(f"{cfg.features}: no '{m}' features (it has "
                             f"{', '.join(feats.modalities)})")
        want, have = cfg.encoders.get(m, DEFAULT_ENCODERS[m]), feats.meta["modalities"][m]["name"]
        if want != have:
            raise UsageError(f"{cfg.features}: {m} was encoded with '{have}', not '{want}' "
                             f"(pass --encoder {m}={have} or re-encode)")
    return feats


def fit_retrieval(config: RetrievalConfig, out: str | Path, resume: bool = False,
                  with_baselines: bool = True, progress: bool = True) -> dict:
    """Train, evaluate and index; returns ``{"metrics":…, "baselines":…, "seconds":…}``."""
    cfg = config
    if cfg.loss not in METHODS:
        raise UsageError(f"unknown loss '{cfg.loss}'; choose one of {', '.join(METHODS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest = read_manifest(cfg.manifest, columns=cfg.columns)
    if cfg.features:
        feats = load_encoded(cfg)
    else:
        feats = encode_manifest(manifest, out / "features", encoders=cfg.encoders or None,
                                cache_dir=cfg.cache_dir, progress=progress).features
    data = load_pairs(feats, manifest, cfg.query, cfg.target, cfg.relevance)
    names = (cfg.query, cfg.target)
    qi, tj = data.pairs("train")
    if len(qi) < 2:
        raise PolymodalError(f"{manifest.path}: fewer than 2 training pairs with both "
                             f"{cfg.query} and {cfg.target}")
    if "val" not in set(data.split[data.query.rows]):  # carve a validation split from train
        rng = np.random.default_rng(cfg.train.seed)
        train_rows = np.flatnonzero(data.split == "train")
        data.split[rng.choice(train_rows, max(1, len(train_rows) // 10), replace=False)] = "val"
        qi, tj = data.pairs("train")
    if "test" not in set(data.split[data.query.rows]):
        raise PolymodalError(f"{manifest.path}: no test rows with {cfg.query} (add a split column)")
    gen = seed_everything(cfg.train.seed)
    model = _build_model(cfg, data)
    train_info: dict = {}
    if cfg.loss == "cca":
        _fit_cca(model, data, cfg)
    elif cfg.loss in ALIGNERS:
        train_info = _fit_aligner(model, data, cfg)
    else:
        qx, tx = torch.from_numpy(data.query.x), torch.from_numpy(data.target.x)
        groups = torch.from_numpy(data.groups)
        vq, vt = data.side_split(data.query, "val"), data.side_split(data.target, "val")
        vrel = data.relevance(vq, vt)
        bs = min(cfg.batch_size, len(qi))

        def batches(epoch: int):
            perm = torch.randperm(len(qi), generator=gen).numpy()
            for s in range(0, len(perm) - bs + 1, bs):
                idx = perm[s:s + bs]
                yield qx[qi[idx]], tx[tj[idx]], groups[data.query.rows[qi[idx]]]

        def validate(m: AlignModel) -> float:
            qe, te = similarity(m, vq, vt)
            return _metrics(qe @ te.T, vrel)["R@10"]

        res = fit_loop(model, _loss_fn(cfg), batches, validate, cfg.train, run_dir=out,
                       resume=resume, desc=f"fit {cfg.query}->{cfg.target} ({cfg.loss})")
        train_info = {"best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
                      "val_R@10": res.best_score, "train_seconds": round(res.seconds, 2)}
    q, t = data.side_split(data.query, "test"), data.side_split(data.target, "test")
    qe, te = similarity(model, q, t)
    metrics = evaluate_sides(qe, te, data.relevance(q, t), names)
    base = baselines(data, names) if with_baselines else {}
    save_run(out, cfg, model, data)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    if base:
        atomic_write_text(out / "baselines.json", json.dumps(base, indent=1))
    info = {"train": train_info, "n_test_queries": len(q.x), "n_test_targets": len(t.x),
            "seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_text(out / "run.json", json.dumps(info, indent=1))
    return {"metrics": metrics, "baselines": base, **info}


def save_run(out: Path, cfg: RetrievalConfig, model: AlignModel, data: PairedData) -> None:
    """Weights (safetensors), config, head specs and an index of every target vector."""
    from safetensors.torch import save_file

    from polymodal.index import build_index

    with atomic_path(out / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    doc = {"task": "retrieval", "config": json.loads(cfg.model_dump_json()),
           "heads": model.specs, "scalars": list(model.scalars.keys()),
           "encoders": {m: cfg.encoders.get(m, DEFAULT_ENCODERS[m]) for m in (cfg.query, cfg.target)}}
    atomic_write_text(out / "config.yaml", yaml.safe_dump(doc, sort_keys=False))
    te = model.embed_numpy(data.target.x, "target")
    counts = np.bincount(data.target.rows, minlength=len(data.ids))
    seen: dict[int, int] = {}
    ids = []
    for r in data.target.rows:
        k = seen[int(r)] = seen.get(int(r), -1) + 1
        ids.append(data.ids[r] if counts[r] == 1 else f"{data.ids[r]}#{k}")
    index = build_index(te.shape[1], kind=cfg.index, metric="cosine", expected_size=len(ids))
    index.add(te, ids)
    index.save(out / "index")
