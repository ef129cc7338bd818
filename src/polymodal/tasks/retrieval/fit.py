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

from polymodal.nn.dual_encoder import AlignModel
from polymodal.objectives.losses import get_loss, loss_names, loss_params
from polymodal.objectives.registry import ALIGNMENTS
from polymodal.core.atomic import atomic_write_text
from polymodal.features.cache.features import FeatureSet
from polymodal.core.runfolder import RunFolder, absolute_paths
from polymodal.core.splits import write_splits
from polymodal.index.build import check_kind
from polymodal.data.manifest import read_manifest
from polymodal.features.encoders import DEFAULT_ENCODERS
from polymodal.core.errors import PolymodalError, UsageError
from polymodal.features.encode import encode_manifest
from polymodal.tasks.retrieval.data import (PairedData, Side, check_pairs, load_pairs,
                                            with_frame_bags)
from polymodal.tasks.retrieval.config import AUTO, RetrievalConfig
from polymodal.tasks.retrieval.pooled import bags as _bags, embed_side
from polymodal.train import dist
from polymodal.train.loop import fit_loop, seed_everything

Modality = Literal["text", "image", "audio", "video"]
METHODS = tuple(ALIGNMENTS.names())


def method_kind(loss: str) -> str:
    """How a method trains, from its registry metadata: ``loss`` (heads trained with a
    contrastive loss), ``regression`` (query regressed onto the fixed target features),
    ``closed-form`` (linear CCA) or ``aligner`` (deep CCA / autoencoder: their own ``fit``)."""
    meta = ALIGNMENTS.get(loss).metadata
    return meta.get("fit") or meta["kind"]


def _build_model(cfg: RetrievalConfig, data: PairedData) -> AlignModel:
    dq, dt = data.query.x.shape[1], data.target.x.shape[1]
    means = {"query": torch.from_numpy(data.side_split(data.query, "train").x.mean(0)),
             "target": torch.from_numpy(data.side_split(data.target, "train").x.mean(0))}
    opts = {"normalize": False}
    if cfg.head == "mlp":
        opts.update(hidden=cfg.hidden, dropout=cfg.dropout)
    kind = method_kind(cfg.loss)
    if kind == "regression":  # regress the query onto the fixed target features
        specs = {"query": {"kind": cfg.head, "in_dim": dq, "out_dim": dt, **opts},
                 "target": {"kind": "identity", "in_dim": dt}}
    elif kind == "aligner":
        # deep CCA whitens each batch: it needs (well) more pairs per batch than components
        k_dcca = max(2, min(cfg.dim, cfg.batch_size // 2, len(data.pairs("train")[0]) // 8))
        specs = {"query": {"kind": "identity", "in_dim": dq},
                 "target": {"kind": "identity", "in_dim": dt},
                 "aligner": ({"kind": "dcca", "x_dim": dq, "y_dim": dt, "out_dim": k_dcca,
                              "hidden": [cfg.hidden]} if cfg.loss == "dcca" else
                             {"kind": "autoencoder", "dims": {"query": dq, "target": dt},
                              "latent_dim": cfg.dim, "hidden": cfg.hidden})}
    elif kind == "closed-form":  # linear CCA: more components than ~n/8 pairs fit noise
        k = max(2, min(cfg.dim, dq, dt, len(data.pairs("train")[0]) // 8))
        specs = {s: {"kind": "linear", "in_dim": d, "out_dim": k, "normalize": False}
                 for s, d in (("query", dq), ("target", dt))}
    else:
        specs = {s: {"kind": cfg.head, "in_dim": d, "out_dim": cfg.dim, **opts}
                 for s, d in (("query", dq), ("target", dt))}
    pools = {s: {"dim": side.x.shape[1], "hidden": POOL_HIDDEN}
             for s, side in (("query", data.query), ("target", data.target))
             if side.frames is not None}
    if pools:  # --video-pool attention (contrastive heads only, `check_pool`)
        specs["pools"] = pools
    scalars = loss_params(cfg.loss) if cfg.loss in loss_names() else {}
    return AlignModel(specs, means, scalars)


POOL_HIDDEN = 128  # width of the attention pool's scoring MLP


def check_pool(cfg: RetrievalConfig) -> None:
    """Before any encoding: ``video_pool: attention`` needs a video side and heads trained with
    a contrastive loss (the pool is trained with them)."""
    if cfg.video_pool != "attention":
        return
    if "video" not in (cfg.query, cfg.target):
        raise UsageError(f"--video-pool attention: neither side is video ({cfg.query} -> "
                         f"{cfg.target})")
    if cfg.pairs or cfg.pivot or cfg.bridge != "none":
        raise UsageError("--video-pool attention: not with --pairs / --pivot / --bridge")
    if cfg.loss == AUTO or method_kind(cfg.loss) != "loss":
        losses = ", ".join(m for m in METHODS if method_kind(m) == "loss")
        raise UsageError(f"--video-pool attention trains the pool with the heads: pick a "
                         f"contrastive --loss ({losses}), not {cfg.loss}")


def _loss_fn(cfg: RetrievalConfig):
    """One training step's loss; ``margin`` and ``pair_ids`` go to the losses whose signature
    takes them (`polymodal.objectives.registry`)."""
    from polymodal.objectives.registry import ALIGNMENTS

    accepts = set(ALIGNMENTS.options(cfg.loss))
    fixed = {"margin": cfg.margin} if "margin" in accepts else {}
    fn = get_loss(cfg.loss)  # resolved once (registry lookup + preset), not per step

    def step(model: AlignModel, batch) -> torch.Tensor:
        q, t, g, *masks = batch  # the global batch: embed this rank's rows, gather all
        qm, tm = (None if m is None else dist.shard(m) for m in (masks or (None, None)))
        a = dist.gather(model.embed(dist.shard(q), "query", qm))
        b = dist.gather(model.embed(dist.shard(t), "target", tm))
        kw = {**fixed, **dict(model.scalars.items())}
        if "pair_ids" in accepts:
            kw["pair_ids"] = g
        return fn(a, b, **kw)
    return step


def evaluate_and_save(out: Path, cfg: RetrievalConfig, model: AlignModel, data, feats,
                      names, with_baselines: bool):
    """Test-split metrics (and the ridge / CCA baselines), then the run's model, metrics.json and
    baselines.json; -> (metrics, baselines, test query side, test target side)."""
    q, t = data.side_split(data.query, "test"), data.side_split(data.target, "test")
    qe, te = similarity(model, q, t)
    metrics = evaluate_sides(qe, te, data.relevance(q, t), names)
    base = baselines(data, names) if with_baselines else {}
    save_run(out, cfg, model, data, feats)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    if base:
        atomic_write_text(out / "baselines.json", json.dumps(base, indent=1))
    return metrics, base, q, t


def similarity(model: AlignModel, q: Side, t: Side) -> tuple[np.ndarray, np.ndarray]:
    """Shared-space embeddings of query and target vectors."""
    return embed_side(model, q, "query"), embed_side(model, t, "target")


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


def _fit_aligner(model: AlignModel, data: PairedData, cfg: RetrievalConfig, out: Path,
                 resume: bool = False) -> dict:
    """Deep CCA / autoencoder: their own ``fit`` (through `fit_loop`: progress, RUN/train_log.csv,
    checkpoint / resume, early stopping on their validation score) on the training pairs, with
    the val pairs for validation (deep CCA: total canonical correlation; autoencoder: minus its
    loss)."""
    qi, tj = data.pairs("train")
    qv, tv = data.pairs("val")
    X, Y = data.query.x[qi], data.target.x[tj]
    Xv, Yv = data.query.x[qv], data.target.x[tv]
    kw = {"batch_size": cfg.batch_size, "run_dir": out, "resume": resume,
          "desc": f"fit {cfg.query}->{cfg.target} ({cfg.loss})"}
    if cfg.loss == "dcca":
        model.aligner.fit(X, Y, cfg.train, val=(Xv, Yv) if len(qv) else None, **kw)
    else:
        model.aligner.fit({"query": X, "target": Y}, cfg.train,
                          val={"query": Xv, "target": Yv} if len(qv) > 1 else None, **kw)
    res = model.aligner.train_result_
    return {"best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
            "val_score": res.best_score, "train_seconds": round(res.seconds, 2)}


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


def run_encoders(cfg: RetrievalConfig) -> dict[str, str]:
    """The encoder of each side: ``cfg.encoders`` overrides only the modality it names, the other
    side keeps its default. Naming a modality the run does not align is an error."""
    mods = (cfg.query, cfg.target) + ((cfg.pivot,) if cfg.pairs and cfg.pivot else ())
    extra = sorted(set(cfg.encoders) - set(mods))
    if extra:
        raise UsageError(f"--encoder {extra[0]}=…: this run aligns {cfg.query} and {cfg.target}")
    return {m: cfg.encoders.get(m, DEFAULT_ENCODERS[m]) for m in mods}


def load_encoded(cfg: RetrievalConfig) -> FeatureSet:
    """The pre-encoded folder ``cfg.features``; its encoders must be the ones ``cfg`` asks for
    (the run records them so that ``search`` encodes queries the same way)."""
    feats = FeatureSet.load(cfg.features)
    for m in run_encoders(cfg):
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
    """Train, evaluate and index; returns ``{"metrics":…, "baselines":…, "seconds":…}``.

    Under torchrun (`polymodal.train.dist`) every rank trains on its rows of each global batch
    with the negatives of the whole batch (gathered embeddings); rank 0 alone encodes, evaluates
    and writes ``out``; the other ranks return ``{"train": …, "rank": r}`` and write nothing."""
    cfg = absolute_paths(config)
    if cfg.loss not in METHODS + ("auto",):
        raise UsageError(f"unknown loss '{cfg.loss}'; choose auto or one of {', '.join(METHODS)}")
    check_kind(cfg.index)  # an unknown kind or a missing engine: before any encoding
    check_pool(cfg)
    if cfg.bridge != "none":  # speech as a bridge: its own path (tasks/retrieval/bridge.py)
        from polymodal.tasks.retrieval.bridge import fit_bridge

        return fit_bridge(cfg, Path(out), resume, with_baselines, progress)
    if cfg.pairs or cfg.pivot:
        from polymodal.tasks.retrieval.binding import check_binding

        check_binding(cfg)
    out = Path(out)
    t0 = time.perf_counter()
    manifest = read_manifest(cfg.manifest, columns=cfg.columns)
    check_pairs(manifest, cfg.query, cfg.target, cfg.relevance)  # before any encoding
    if cfg.frame_pairs:
        from polymodal.tasks.retrieval.moments import check_frame_pairs

        check_frame_pairs(cfg, manifest)
    encoders = run_encoders(cfg)

    def encode() -> None:  # rank 0 only: the one process that writes the run folder
        RunFolder(out).begin()
        if not cfg.features:
            encode_manifest(manifest, out / "features", encoders=encoders,
                            cache_dir=cfg.cache_dir, progress=progress,
                            modalities=list(encoders), backend=cfg.backend,
                            precision=cfg.encoder_precision)
    dist.on_main(encode)  # the other ranks wait, then read what rank 0 encoded
    feats = load_encoded(cfg) if cfg.features else FeatureSet.load(out / "features")
    data = with_frame_bags(load_pairs(feats, manifest, cfg.query, cfg.target, cfg.relevance),
                           feats, cfg.video_pool)
    names = (cfg.query, cfg.target)
    qi, tj = data.pairs("train")
    if len(qi) < 2:
        raise PolymodalError(f"{manifest.path}: fewer than 2 training pairs with both "
                             f"{cfg.query} and {cfg.target} (after encoding)")
    if "test" not in set(data.split[data.query.rows]):
        raise PolymodalError(f"{manifest.path}: no test rows with {cfg.query} (add a split column)")
    if dist.is_main():
        write_splits(out / "splits.csv", data.ids, data.split)
    selection = None
    if cfg.pairs:  # emergent binding: each side aligned to the pivot with its own pairs
        from polymodal.tasks.retrieval.binding import fit_binding

        cfg, model, train_info = fit_binding(cfg, feats, manifest, data, out, resume)
    elif cfg.loss == "auto":  # model selection on the validation split
        from polymodal.tasks.retrieval.closed_form import split_groups
        from polymodal.tasks.retrieval.select import select_model

        cfg, model, train_info, selection = select_model(
            cfg, data, out, lambda c, o: train_model(c, data, o, resume, manifest, feats,
                                                     encoders),
            groups=split_groups(manifest, data))
    else:
        model, train_info = train_model(cfg, data, out, resume, manifest, feats, encoders)
    if not dist.is_main():  # evaluation and every write: rank 0 only
        return {"train": train_info, "rank": dist.rank()}
    metrics, base, q, t = evaluate_and_save(out, cfg, model, data, feats, names, with_baselines)
    info = {"train": train_info, "n_test_queries": len(q.x), "n_test_targets": len(t.x),
            "seconds": round(time.perf_counter() - t0, 2), "method": cfg.loss}
    if selection is not None:
        info["selection"] = selection
    RunFolder(out).update_json("run.json", info)  # keeps the provenance begin() wrote
    RunFolder(out).finish()
    return {"metrics": metrics, "baselines": base, **info}


def pair_batches(qx: torch.Tensor, tx: torch.Tensor, qi: np.ndarray, tj: np.ndarray,
                 pair_groups: torch.Tensor, bs: int, gen: torch.Generator,
                 qm: torch.Tensor | None = None, tm: torch.Tensor | None = None):
    """One epoch of training batches ``(query x, target x, pair ids, query mask, target
    mask)``: pairs ``(qi[k], tj[k])`` in a random order from ``gen``, full batches of ``bs``.

    Rows are gathered with ``index_select`` (about 3x faster than indexing with an array on
    this CPU; the same values). A batch whose pair ids are all distinct gets ``None`` for them:
    no other positives to remove from any softmax, the same loss, and the loss step needs no
    ``[B, B]`` id mask (whose compiled kernel does not vectorise: about 0.6 ms of a 3.6 ms
    step at batch 256, docs/RESULTS.md §1)."""
    groups = np.asarray(pair_groups)
    perm = torch.randperm(len(qi), generator=gen).numpy()
    for s in range(0, len(perm) - bs + 1, bs):
        idx = perm[s:s + bs]
        q = torch.from_numpy(qi[idx].astype(np.int64))
        t = torch.from_numpy(tj[idx].astype(np.int64))
        g = np.sort(groups[idx])
        ids = torch.from_numpy(groups[idx]) if (g[1:] == g[:-1]).any() else None
        yield (qx.index_select(0, q), tx.index_select(0, t), ids,
               None if qm is None else qm.index_select(0, q),
               None if tm is None else tm.index_select(0, t))


def train_model(cfg: RetrievalConfig, data: PairedData, out: Path, resume: bool, manifest,
                feats: FeatureSet, encoders: dict[str, str]) -> tuple[AlignModel, dict]:
    """Build and train (or fit in closed form) the model of ``cfg.loss`` on the training pairs
    of ``data``, validating on its val pairs; ``out``: its checkpoint / train_log folder."""
    qi, tj = data.pairs("train")
    gen = seed_everything(cfg.train.seed)
    model = _build_model(cfg, data)
    train_info: dict = {}
    kind = method_kind(cfg.loss)
    if kind == "closed-form":
        _fit_cca(model, data, cfg)
    elif kind == "aligner":
        train_info = _fit_aligner(model, data, cfg, out, resume)
    else:
        qx, tx = torch.from_numpy(data.query.x), torch.from_numpy(data.target.x)
        groups = torch.from_numpy(data.groups)
        pair_groups = groups[data.query.rows[qi]]
        if cfg.frame_pairs:  # + (word, frame) pairs of the training clips
            from polymodal.tasks.retrieval.moments import frame_word_pairs

            qx, tx, qi, tj, pair_groups = frame_word_pairs(cfg, manifest, feats, data, encoders,
                                                           qx, tx, qi, tj, pair_groups)
        (qx, qm), (tx, tm) = _bags(data.query, qx), _bags(data.target, tx)
        vq, vt = data.side_split(data.query, "val"), data.side_split(data.target, "val")
        vrel = data.relevance(vq, vt)
        bs = min(cfg.batch_size, len(qi))

        def batches(epoch: int):
            return pair_batches(qx, tx, qi, tj, pair_groups, bs, gen, qm, tm)

        def validate(m: AlignModel) -> float:
            qe, te = similarity(m, vq, vt)
            return _metrics(qe @ te.T, vrel)["R@10"]

        res = fit_loop(model, _loss_fn(cfg), batches, validate, cfg.train, run_dir=out,
                       resume=resume, desc=f"fit {cfg.query}->{cfg.target} ({cfg.loss})",
                       generator=gen)
        train_info = {"best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
                      "val_R@10": res.best_score, "train_seconds": round(res.seconds, 2),
                      "history": res.history}  # per epoch: loss, val (R@10); for --mlflow
    return model, train_info


def save_run(out: Path, cfg: RetrievalConfig, model: AlignModel, data: PairedData,
             feats: FeatureSet) -> None:
    """Weights (safetensors), config, head specs and an index of every target vector."""
    from polymodal.index import build_index

    run = RunFolder(out)
    run.save_weights(model.state_dict())
    encoders = {m: {"name": feats.meta["modalities"][m]["name"], "id": feats.encoder_id(m)}
                for m in (cfg.query, cfg.target)}
    run.write_config("retrieval", json.loads(cfg.model_dump_json()), encoders,
                     model={"heads": model.specs, "scalars": list(model.scalars.keys())})
    te = embed_side(model, data.target, "target")
    counts = np.bincount(data.target.rows, minlength=len(data.ids))
    seen: dict[int, int] = {}
    ids = []
    for r in data.target.rows:
        k = seen[int(r)] = seen.get(int(r), -1) + 1
        ids.append(data.ids[r] if counts[r] == 1 else f"{data.ids[r]}#{k}")
    index = build_index(te.shape[1], kind=cfg.index, metric="cosine", expected_size=len(ids))
    index.add(te, ids)
    index.save(out / "index")
