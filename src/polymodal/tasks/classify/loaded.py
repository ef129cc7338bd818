"""A fitted classification run in memory: `load_classifier(RUN)` -> `LoadedClassifier` (the
model, its config.yaml, its data), and `predict` on raw features. `polymodal.tasks.classify.predict`
encodes new files with the run's encoders on top of this."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from polymodal.core.errors import UsageError
from polymodal.core.runfolder import read_run
from polymodal.core.splits import run_splits
from polymodal.data.manifest import read_manifest
from polymodal.features.cache.features import FeatureSet
from polymodal.tasks.classify.data import ClassData, decode_outputs, prepare_data, score_outputs
from polymodal.tasks.classify.fit import ClassifierNet, build_classifier, model_outputs


@dataclass
class LoadedClassifier:
    """A trained run: the model plus its config.yaml (``doc``)."""

    run: Path
    doc: dict
    model: ClassifierNet

    @property
    def problem(self) -> str:
        return self.doc["problem"]

    @property
    def modalities(self) -> list[str]:
        return list(self.doc["modalities"])

    @property
    def labels(self) -> list | None:
        return self.doc.get("labels")

    @property
    def spec(self) -> dict:
        return {"problem": self.problem, "labels": self.labels, "mean": self.doc.get("target_mean"),
                "std": self.doc.get("target_std")}

    def outputs(self, x: Mapping[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        """Raw model outputs for features ``x`` and mask ``[N, M]`` (columns = ``modalities``)."""
        return model_outputs(self.model, x, mask)

    def score(self, y: np.ndarray, out: np.ndarray) -> dict[str, float]:
        return score_outputs(y, out, self.spec)

    def data(self) -> ClassData:
        """Every usable row of the run's manifest + features (``.select(split)`` for a split)."""
        c = self.doc["config"]
        manifest = read_manifest(c["manifest"], columns=c.get("columns"))
        fs = FeatureSet.load(c["features"])
        data, _, _ = prepare_data(manifest, fs, self.modalities, self.doc["config"]["target"],
                                  self.problem, spec=self.spec, splits=run_splits(self.run))
        return data


def load_classifier(run: str | Path) -> LoadedClassifier:
    """Load a run folder written by `fit_classifier`."""
    run, doc, state = read_run(run, "classification")
    c = doc["config"]
    model = build_classifier(doc["method"], doc["dims"], doc["n_out"], c["hidden"], c["dropout"],
                             c.get("fusion_options"), bool(c.get("unimodal_heads")),
                             doc["problem"])
    model.load_state_dict(state)
    model.eval()
    return LoadedClassifier(run=run, doc=doc, model=model)


def predict(run: str | Path | LoadedClassifier, features: Mapping[str, np.ndarray] | FeatureSet,
            mask: np.ndarray | None = None) -> dict[str, Any]:
    """Predict for raw features (``{modality: [N, d]}`` from the run's encoders, or a
    `FeatureSet`). ``mask [N, M]`` (columns = the run's sorted modalities) marks present
    modalities; default: a FeatureSet's presence, else every given modality present.

    Returns ``prediction`` (labels, label lists or values), ``proba`` (``[N, C]`` or None),
    ``labels`` and the ``mask`` used."""
    clf = run if isinstance(run, LoadedClassifier) else load_classifier(run)
    mods, dims = clf.modalities, clf.doc["dims"]
    if isinstance(features, FeatureSet):
        got = {m: features.per_row(m) for m in mods if m in features.modalities}
        x = {m: v for m, (v, _) in got.items()}
        present = {m: p for m, (_, p) in got.items()}
    else:
        unknown = sorted(set(features) - set(mods))
        if unknown:
            raise UsageError(f"unknown modalities {unknown}; this run uses {mods}")
        x = {m: np.asarray(v, np.float32) for m, v in features.items() if v is not None}
        present = {}
    if not x:
        raise UsageError(f"no features given; this run uses {mods}")
    n = len(next(iter(x.values())))
    for m, v in x.items():
        if v.ndim != 2 or v.shape != (n, dims[m]):
            raise UsageError(f"modality '{m}': expected features [{n}, {dims[m]}], got "
                             f"{list(v.shape)}")
    x.update({m: np.zeros((n, dims[m]), np.float32) for m in mods if m not in x})
    if mask is None:
        given = set(present) if isinstance(features, FeatureSet) else set(features)
        mask = np.stack([present.get(m, np.full(n, m in given)) for m in mods], 1)
    mask = np.asarray(mask, bool)
    if mask.shape != (n, len(mods)):
        raise UsageError(f"mask must have shape [{n}, {len(mods)}] (columns {mods}), got "
                         f"{list(mask.shape)}")
    pred, proba = decode_outputs(clf.outputs(x, mask), clf.spec)
    return {"prediction": pred, "proba": proba, "labels": clf.labels, "mask": mask}
