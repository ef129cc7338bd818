"""Multimodal prediction: classification, multilabel classification and regression.

``fit_classifier(config, out)`` encodes the manifest (cached), trains a fusion model (or a
unimodal baseline, ``fusion="unimodal:<modality>"``) on the train split with early stopping on
val, evaluates on test and writes::

    RUN/config.yaml  RUN/model.safetensors  RUN/metrics.json  RUN/predictions.csv
    RUN/skipped.jsonl  RUN/train_log.csv  RUN/features/ (unless ``features`` was given)

Missing modalities: a row's mask comes from the features it has (an empty manifest cell or a
file that failed to encode means missing). Rows with none of the chosen modalities are reported
in skipped.jsonl and left out. ``modality_dropout`` hides present modalities at random while
training (never all of a row); evaluation uses the real mask. A unimodal baseline is an MLP on
one modality; rows missing that modality get a learned output vector ``prior`` (initialised to
the training log class frequencies / the target mean, and trained on training rows that miss
the modality, if any). ``unimodal_heads`` (default on) makes a fusion no-regret: it also
trains one unimodal head per modality and mixes them per pattern of present modalities
(`polymodal.nn.no_regret`, `polymodal.tasks.classify.no_regret`); metrics.json then holds
``component_val_scores`` and ``no_regret_choice``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polymodal.core.atomic import atomic_write_text
from polymodal.features.cache.features import FeatureSet
from polymodal.data.manifest import Manifest, read_manifest
from polymodal.core.runfolder import RunFolder, absolute_paths
from polymodal.core.splits import write_splits
from polymodal.core.errors import Problem, UsageError
from polymodal.nn.fused_classifier import FusedClassifier, UnimodalClassifier
from polymodal.nn.fusion import FUSIONS, build_fusion, modality_dropout
from polymodal.nn.no_regret import NoRegretClassifier
from polymodal.tasks.classify.data import (check_targets, ClassData, PeakMemory, prepare_data,
                                           score_outputs, unimodal_prior, write_predictions)
from polymodal.tasks.classify.config import ClassifierConfig
from polymodal.tasks.classify import no_regret as nr
from polymodal.tasks.classify.groups import (batch_indices, check_columns, column_values,
                                             scores_by_group)
from polymodal.train import dist
from polymodal.train.loop import fit_loop, seed_everything, torch_threads

UNIMODAL = "unimodal:"


def check_method(name: str, modalities: Sequence[str],
                 options: Mapping[str, Any] | None = None) -> None:
    """Raise a `UsageError` unless ``name`` is a fusion (`polymodal.nn.registry.FUSIONS`) or
    ``unimodal:<m>`` usable with these modalities, and the fusion takes ``options`` (checked
    against its constructor's signature, before any encoding)."""
    from polymodal.nn.registry import FUSIONS as FUSION_REGISTRY
    from polymodal.tasks.classify.config import check_fusion

    mods = sorted(modalities)
    check_fusion(name, mods)
    if name in FUSION_REGISTRY and len(mods) < 2:
        raise UsageError(f"fusion '{name}' needs at least 2 modalities, got {mods}; use "
                         f"{', '.join(UNIMODAL + m for m in mods)}")
    if name in FUSION_REGISTRY and options:
        FUSION_REGISTRY.check_options(name, options)


ClassifierNet = FusedClassifier | UnimodalClassifier | NoRegretClassifier


def build_classifier(method: str, dims: Mapping[str, int], n_out: int, hidden: int = 128,
                     dropout: float = 0.1, options: Mapping[str, Any] | None = None,
                     no_regret: bool = False, problem: str = "classification"
                     ) -> ClassifierNet:
    """Compose the model for ``method``: a fusion from the registry (+ a head unless the fusion
    produces the outputs itself) or ``unimodal:<modality>`` (an MLP on that modality).
    ``no_regret`` wraps a fusion with one unimodal head per modality (`NoRegretClassifier`)."""
    kind, _, modality = method.partition(":")
    if no_regret and kind + ":" != UNIMODAL:
        fused = build_classifier(method, dims, n_out, hidden, dropout, options)
        heads = {m: build_classifier(UNIMODAL + m, dims, n_out, hidden, dropout) for m in dims}
        return NoRegretClassifier(fused, heads, problem)
    if kind + ":" == UNIMODAL:
        body = nn.Sequential(nn.Linear(dims[modality], hidden), nn.ReLU(), nn.Dropout(dropout),
                             nn.Linear(hidden, n_out))
        return UnimodalClassifier(dims, modality, body, n_out)
    logits = FUSIONS[method].produces_logits
    fusion = build_fusion(method, dict(dims), n_out if logits else hidden, **dict(options or {}))
    head = None if logits else nn.Sequential(nn.ReLU(), nn.Dropout(dropout),
                                             nn.Linear(hidden, n_out))
    return FusedClassifier(dims, fusion, head)


def model_outputs(model: ClassifierNet, x: Mapping[str, np.ndarray], mask: np.ndarray,
                  batch: int = 8192, threads: int = 1) -> np.ndarray:
    """Raw outputs ``[N, n_out]`` of ``model`` in eval mode (no gradients)."""
    model.eval()
    n = len(mask)
    outs = []
    with torch.inference_mode(), torch_threads(threads):
        for s in range(0, n, batch):
            xb = {m: torch.from_numpy(np.ascontiguousarray(v[s:s + batch], np.float32))
                  for m, v in x.items()}
            outs.append(model(xb, torch.from_numpy(np.asarray(mask[s:s + batch], bool))).numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)


def _loss(problem: str, out: torch.Tensor, y: torch.Tensor,
          reduction: str = "mean") -> torch.Tensor:
    """The batch's mean loss, or (``reduction="none"``) one loss per row."""
    if problem == "classification":
        return F.cross_entropy(out, y, reduction=reduction)
    if problem == "multilabel":
        loss = F.binary_cross_entropy_with_logits(out, y, reduction=reduction)
        return loss.mean(1) if reduction == "none" else loss
    return F.mse_loss(out[:, 0], y, reduction=reduction)


def _scaled_y(data: ClassData, spec: dict) -> np.ndarray:
    if spec["problem"] != "regression":
        return data.y
    return ((data.y - spec["mean"]) / spec["std"]).astype(np.float32)


def train_model(cfg: ClassifierConfig, data: ClassData, spec: dict, out: Path | None,
                progress: bool = True, resume: bool = False,
                groups: np.ndarray | None = None) -> tuple[ClassifierNet, dict]:
    """Train on ``data``'s train rows with early stopping on its val rows. ``groups`` (one
    value per row of ``data``): rows of a value train in the same batch (``batch_by``)."""
    problem = spec["problem"]
    tr, va = data.select("train"), data.select("val")
    if groups is not None:
        groups = groups[np.flatnonzero(data.has_y & (data.split == "train"))]
    gen = seed_everything(cfg.train.seed)
    dims = {m: tr.x[m].shape[1] for m in data.modalities}
    n_out = len(spec["labels"]) if problem != "regression" else 1
    model = build_classifier(cfg.fusion, dims, n_out, cfg.hidden, cfg.dropout,
                             cfg.fusion_options, cfg.unimodal_heads, problem)
    means, stds = {}, {}
    for i, m in enumerate(data.modalities):
        rows = tr.x[m][tr.mask[:, i]]
        means[m] = rows.mean(0) if len(rows) else np.zeros(dims[m], np.float32)
        sd = rows.std(0) if len(rows) > 1 else np.ones(dims[m], np.float32)
        stds[m] = np.where(sd > 1e-6, sd, 1.0)
    model.set_scaling(means, stds)
    if model.prior is not None:
        with torch.no_grad():
            model.prior.copy_(torch.from_numpy(unimodal_prior(tr, spec)))
    xs = {m: torch.from_numpy(np.ascontiguousarray(tr.x[m])) for m in data.modalities}
    mask, y = torch.from_numpy(tr.mask), torch.from_numpy(_scaled_y(tr, spec))
    n, bs = len(y), min(cfg.batch_size, len(y))
    p = cfg.modality_dropout

    def batches(epoch: int):
        for idx in batch_indices(n, bs, gen, groups):
            if len(idx) < 2 < n:
                continue
            mb = mask[idx]
            yield ({m: v[idx] for m, v in xs.items()},
                   modality_dropout(mb, p, gen) if p > 0 else mb, y[idx], mb)

    def step(mdl: nn.Module, batch) -> torch.Tensor:
        xb, mb, yb, real = batch
        if isinstance(mdl, NoRegretClassifier):  # every rank: the whole batch
            return nr.step_loss(mdl, problem, _loss, xb, mb, real, yb, cfg.head_distill)
        n_global = len(yb)  # this rank's rows of the global batch (`polymodal.train.dist`)
        xb, mb, yb = dist.shard((xb, mb, yb), n_global)
        if not len(yb):
            return torch.zeros(())
        return dist.shard_mean(_loss(problem, mdl(xb, mb), yb, "none"), n_global)

    vy = torch.from_numpy(_scaled_y(va, spec))

    def validate(mdl: nn.Module) -> float:
        o = model_outputs(mdl, va.x, va.mask)
        loss = float(_loss(problem, torch.from_numpy(o), vy))
        if problem == "classification":  # accuracy; the loss only breaks ties
            return float(np.mean(o.argmax(1) == va.y)) - 1e-3 * loss
        return -loss

    best = (nr.ComponentBest(model, problem, _loss, va.x, va.mask, _scaled_y(va, spec))
            if isinstance(model, NoRegretClassifier) else None)
    tc = cfg.train.model_copy(update={"progress": cfg.train.progress and progress})
    with PeakMemory() as mem, torch_threads(cfg.threads):
        res = fit_loop(model, step, batches, best or validate, tc, run_dir=out, resume=resume,
                       desc=f"fit {cfg.fusion}", generator=gen)
        extra = {} if best is None else {  # each component at its own best epoch, then mixing
            "component_val_scores": best.restore(),
            "no_regret_choice": nr.calibrate(model, problem, _loss, va.x, va.mask,
                                                    _scaled_y(va, spec))}
    info = {**extra, "train_seconds": round(res.seconds, 3), "epochs_run": res.epochs_run,
            "best_epoch": res.best_epoch, "val_score": round(res.best_score, 6),
            "params": int(sum(t.numel() for t in model.parameters())),
            "peak_mem_mb": round(mem.mb, 2), "peak_mem_method": mem.method}
    return model, info


def save_classifier(out: Path, cfg: ClassifierConfig, model: ClassifierNet, spec: dict,
                    manifest: Manifest, features: Path, dims: Mapping[str, int]) -> None:
    """Weights (safetensors) and config.yaml (`RunFolder`: config with the features folder the
    run was trained on, label vocabulary, encoders)."""
    run = RunFolder(out)
    run.save_weights(model.state_dict())
    fs = FeatureSet.load(features)
    config = json.loads(cfg.model_dump_json())
    config.update(manifest=str(manifest.path), features=str(Path(features).resolve()))
    run.write_config(
        "classification", config,
        {m: {"name": fs.meta["modalities"][m].get("name") or fs.encoder_id(m).split("|")[0],
             "id": fs.encoder_id(m)} for m in model.names},
        problem=spec["problem"], method=cfg.fusion, labels=spec.get("labels"),
        target_mean=spec.get("mean"), target_std=spec.get("std"),
        modalities=list(model.names), dims={m: int(d) for m, d in dims.items()},
        n_out=_n_out(spec))


def _n_out(spec: dict) -> int:
    return 1 if spec["problem"] == "regression" else len(spec["labels"])


def _features_for(cfg: ClassifierConfig, manifest: Manifest, mods: list[str], out: Path,
                  progress: bool) -> Path:
    if cfg.features:  # rows are matched by id: a folder encoded from a larger manifest works
        FeatureSet.load(cfg.features)
        return Path(cfg.features)
    from polymodal.features.encoders import DEFAULT_ENCODERS
    from polymodal.features.encode import encode_manifest

    enc = {m: cfg.encoders.get(m, DEFAULT_ENCODERS[m]) for m in mods}
    encode_manifest(manifest, out / "features", encoders=enc, cache_dir=cfg.cache_dir,
                    progress=progress, modalities=mods, backend=cfg.backend,
                    precision=cfg.encoder_precision)
    return out / "features"


def resolve_modalities(cfg: ClassifierConfig, manifest: Manifest) -> list[str]:
    """The sorted modalities a run uses (checked against the manifest)."""
    mods = sorted(cfg.modalities or manifest.modalities)
    bad = [m for m in mods if m not in manifest.modalities]
    if bad:
        raise UsageError(f"{manifest.path}: modality '{bad[0]}' has no column; the manifest has "
                         f"{', '.join(manifest.modalities)}")
    extra = sorted(set(cfg.encoders) - set(mods))
    if extra:
        raise UsageError(f"--encoder {extra[0]}=…: this run uses {', '.join(mods)}")
    return mods


def fit_prepared(cfg: ClassifierConfig, data: ClassData, spec: dict, problems: list[Problem],
                 manifest: Manifest, features: Path, out: Path, progress: bool = True,
                 resume: bool = False) -> dict:
    """Train, evaluate and save one run on already prepared data (used by `compare`)."""
    if dist.is_main():
        RunFolder(out).begin()
        write_splits(out / "splits.csv", data.ids, data.split)
    groups = column_values(manifest, data.ids, cfg.batch_by) if cfg.batch_by else None
    model, info = train_model(cfg, data, spec, out, progress=progress, resume=resume,
                              groups=groups)
    if not dist.is_main():  # evaluation and every write: rank 0 only
        return {**info, "rank": dist.rank()}
    test, val = data.select("test"), data.select("val")
    t_out = model_outputs(model, test.x, test.mask)
    result = {"method": cfg.fusion, "problem": spec["problem"], "target": cfg.target,
              "metrics": score_outputs(test.y, t_out, spec),
              "val_metrics": score_outputs(val.y, model_outputs(model, val.x, val.mask), spec),
              **info, "n_train": int(len(data.select("train").ids)), "n_val": len(val.ids),
              "n_test": len(test.ids), "skipped_rows": len(problems)}
    if cfg.group_by:
        result["test_by_group"] = {c: scores_by_group(column_values(manifest, test.ids, c),
                                                      test.y, t_out, spec)
                                   for c in cfg.group_by}
    save_classifier(out, cfg, model, spec, manifest, features,
                    {m: data.x[m].shape[1] for m in data.modalities})
    write_predictions(out / "predictions.csv", test, spec, t_out)
    atomic_write_text(out / "skipped.jsonl", "".join(json.dumps(p.to_dict()) + "\n"
                                                      for p in problems))
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=1))
    for f in ("checkpoint.pt",):
        (out / f).unlink(missing_ok=True)
    RunFolder(out).finish()
    return result


def prepare_run(config: ClassifierConfig, out: Path, progress: bool = True,
                check: Any = None) -> tuple:
    """Everything before training, shared by `fit_classifier` and `compare`: paths made
    absolute, the manifest read, modalities / methods (``check(mods)``) / target / splits
    checked BEFORE any encoding, then the features encoded (cached) and the rows prepared.
    Returns ``(config, manifest, features folder, data, spec, skipped-row problems)``."""
    cfg = absolute_paths(config)
    manifest = read_manifest(cfg.manifest, columns=cfg.columns)
    mods = resolve_modalities(cfg, manifest)
    check_columns(manifest, cfg.group_by, "--group-by")
    check_columns(manifest, [cfg.batch_by] if cfg.batch_by else [], "--batch-by")
    if check is not None:
        check(mods)
    check_targets(manifest, cfg.target, cfg.task)
    def setup() -> Path:  # rank 0 only; the other ranks wait, then read its features
        RunFolder(out).begin()  # before encoding into out/features: a fit failing from here on
        return _features_for(cfg, manifest, mods, out, progress)  # leaves no COMPLETE
    feats = dist.on_main(setup) or (Path(cfg.features) if cfg.features else out / "features")
    data, spec, problems = prepare_data(manifest, FeatureSet.load(feats), mods, cfg.target,
                                        cfg.task)
    return cfg, manifest, feats, data, spec, problems


def fit_classifier(config: ClassifierConfig, out: str | Path, progress: bool = True,
                   resume: bool = False) -> dict:
    """Encode (cached), train with early stopping, evaluate on test, write ``out``.

    Returns the content of ``metrics.json``: ``metrics`` (test: accuracy, macro_f1, auroc or
    mae, r2), ``val_metrics``, ``train_seconds``, ``params``, ``peak_mem_mb`` and counts.
    """
    out = Path(out)
    cfg, manifest, feats, data, spec, problems = prepare_run(
        config, out, progress,
        check=lambda mods: check_method(config.fusion, mods, config.fusion_options))
    if problems and progress and dist.is_main():
        print(f"warning: {len(problems)} rows skipped (first: {problems[0]}); see "
              f"{out / 'skipped.jsonl'}")
    return fit_prepared(cfg, data, spec, problems, manifest, feats, out, progress, resume)


__all__ = ["ClassifierConfig", "ClassifierNet", "build_classifier", "check_method",
           "fit_classifier", "fit_prepared", "model_outputs", "resolve_modalities",
           "train_model", "UNIMODAL", "ClassData"]
