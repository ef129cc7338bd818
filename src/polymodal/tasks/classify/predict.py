"""Use a fitted classification run on new inputs: `Classifier` (what ``polymodal.load(RUN)``
returns for a classification run) and the CSV of ``polymodal predict``.

New inputs are encoded with the run's own encoders, rebuilt from the stored names and checked
against the stored ids (`rebuild_encoder`), and rounded to the feature cache's float16 as the
training features were, so a file gets the prediction a fit on it would have given. Missing
modalities (a key left out, None or an empty text) are masked exactly like missing manifest
cells at training time.
"""
from __future__ import annotations

import csv
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import DecodeError, PolymodalError, Problem, UsageError
from polymodal.core.runfolder import RunFolder
from polymodal.features.cache.store import DTYPE
from polymodal.features.encoders.base import Encoder, rebuild_encoder, warm_up
from polymodal.tasks.classify.loaded import LoadedClassifier, load_classifier, predict

BATCH = 4096  # rows per forward pass (the fusion's weights are read after each)


@dataclass
class Prediction:
    """One item's prediction: ``prediction`` (a label, a list of labels for multilabel runs or
    a value for regression), ``probabilities`` ({label: p}; None for regression), ``weights``
    ({modality: fusion weight} for fusions that expose them, else None) and the modalities
    it was made from."""

    prediction: Any
    probabilities: dict[Any, float] | None
    weights: dict[str, float] | None
    modalities: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ManifestPredictions:
    """`Classifier.predict_manifest`: ids and predictions of the usable rows, the rows skipped
    (`Problem`s, as `polymodal encode` reports them) and warnings (cells treated as missing)."""

    ids: list[str]
    predictions: list[Prediction]
    skipped: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


class Classifier:
    """A fitted classification / multilabel / regression run: ``predict(items)``,
    ``predict_manifest(manifest)``, ``embed(items, modality)``."""

    def __init__(self, loaded: LoadedClassifier):
        self.clf = loaded
        self._enc: dict[str, Encoder] = {}

    @classmethod
    def load(cls, run: str | Path) -> "Classifier":
        return cls(load_classifier(run))

    @property
    def root(self) -> Path:
        return Path(self.clf.run)

    @property
    def modalities(self) -> list[str]:
        return self.clf.modalities

    @property
    def problem(self) -> str:
        return self.clf.problem

    @property
    def method(self) -> str:
        return str(self.clf.doc.get("method"))

    @property
    def labels(self) -> list | None:
        return self.clf.labels

    def encoder(self, modality: str) -> Encoder:
        """The run's encoder for ``modality`` (built on first use, checked against the id the
        training features were made with)."""
        if modality not in self.modalities:
            raise UsageError(f"this run uses {', '.join(self.modalities)}, not {modality}")
        if modality not in self._enc:
            spec = RunFolder(self.root, self.clf.doc).encoders.get(modality) or {}
            configured = (self.clf.doc.get("config") or {}).get("encoders") or {}
            self._enc[modality] = rebuild_encoder(
                spec.get("name", ""), modality, spec.get("id"), where=str(self.root),
                fallback=configured.get(modality))
        return self._enc[modality]

    def warm_up(self) -> None:
        """Load and warm up every encoder now instead of on the first prediction."""
        for m in self.modalities:
            warm_up(self.encoder(m))

    def embed(self, items: Any, modality: str) -> np.ndarray:
        """The run's encoder features (what the model reads): one item -> ``[dim]``, a list ->
        ``[N, dim]`` float32, at the feature cache's precision."""
        try:
            v = self.encoder(modality).encode(items, numpy=True)
        except DecodeError as e:
            raise PolymodalError(f"{modality} {e.path}: {e.reason}") from None
        return v.astype(DTYPE).astype(np.float32)

    def features(self, items: Sequence[Mapping[str, Any]]) -> tuple[dict[str, np.ndarray],
                                                                    np.ndarray]:
        """``(x {modality: [N, dim]}, mask [N, M])`` for items ``{modality: path or text}``:
        each modality's present items are encoded in one batch; several texts of one item are
        averaged, as for a manifest row with several captions."""
        given = [_present(i, item, self.modalities) for i, item in enumerate(items)]
        x, cols = {}, []
        for m in self.modalities:
            dim = int(self.clf.doc["dims"][m])
            xm = np.zeros((len(given), dim), np.float32)
            rows = [(i, g[m]) for i, g in enumerate(given) if m in g]
            if rows:
                flat = [v for _, vals in rows for v in vals]
                vec = self.embed(flat, m)
                at = 0
                for i, vals in rows:
                    xm[i] = vec[at:at + len(vals)].mean(0)
                    at += len(vals)
            x[m] = xm
            cols.append(np.array([m in g for g in given], bool))
        return x, np.stack(cols, 1)

    def predict(self, items: Mapping[str, Any] | Sequence[Mapping[str, Any]]
                ) -> Prediction | list[Prediction]:
        """Predict for one item ``{modality: path or text}`` (any subset of the run's
        modalities; missing keys / None count as missing) or a list of them (encoded and
        predicted in batches)."""
        single = isinstance(items, Mapping)
        batch = [items] if single else list(items)
        if not batch:
            return []
        x, mask = self.features(batch)
        out = self.predict_features(x, mask)
        return out[0] if single else out

    def predict_features(self, x: Mapping[str, np.ndarray], mask: np.ndarray) -> list[Prediction]:
        """Predictions for encoded features ``x`` and mask ``[N, M]`` (columns =
        ``modalities``), with the fusion's weights when it exposes them."""
        from polymodal.tasks.classify.analysis import ATTENTION_ATTR

        fusion = getattr(self.clf.model, "fusion", None)
        mods, labels, out = self.modalities, self.labels, []
        for s in range(0, len(mask), BATCH):
            mb = mask[s:s + BATCH]
            res = predict(self.clf, {m: v[s:s + BATCH] for m, v in x.items()}, mb)
            w = getattr(fusion, ATTENTION_ATTR, None)
            w = w.numpy() if w is not None and w.shape[-1] == len(mods) else None
            proba = res["proba"] if self.problem != "regression" else None
            for j, p in enumerate(res["prediction"]):
                out.append(Prediction(
                    prediction=_plain(p),
                    probabilities=None if proba is None else
                    {_plain(lab): float(q) for lab, q in zip(labels, proba[j])},
                    weights=None if w is None else
                    {m: float(v) for m, v in zip(mods, w[j])},
                    modalities=[m for k, m in enumerate(mods) if mb[j, k]]))
        return out

    def predict_manifest(self, manifest: Any, columns: Mapping[str, str] | None = None,
                         cache_dir: str | Path | None = None, progress: bool = False
                         ) -> ManifestPredictions:
        """Predict every row of a manifest: its files are encoded with the run's encoders
        through the feature cache (``cache_dir``, default: the run's). Rows with an
        undecodable cell or with none of the run's modalities are skipped and reported."""
        from polymodal.data.manifest import Manifest, read_manifest
        from polymodal.features.encode import encode_manifest

        m = manifest if isinstance(manifest, Manifest) else read_manifest(
            manifest, columns=dict(columns or {}))
        mods = [x for x in self.modalities if x in m.modalities]
        if not mods:
            raise UsageError(f"{m.path}: no column of this run's modalities "
                             f"({', '.join(self.modalities)}); it has {', '.join(m.modalities)}")
        cache = cache_dir or (self.clf.doc.get("config") or {}).get("cache_dir")
        with tempfile.TemporaryDirectory(prefix="polymodal-predict-") as tmp:
            res = encode_manifest(m, tmp, encoders={x: self.encoder(x) for x in mods},
                                  cache_dir=cache, progress=progress, modalities=mods)
            fs = res.features
            x, present = {}, {}
            for mod in self.modalities:
                if mod in mods:
                    x[mod], present[mod] = fs.per_row(mod)
        n = len(m.records)
        skipped = list(res.skipped)
        bad_rows = {p.row for p in skipped}
        keep = [i for i, r in enumerate(m.records) if r.row not in bad_rows]
        mask = np.stack([present.get(mod, np.zeros(n, bool)) for mod in self.modalities], 1)
        for i in [i for i in keep if not mask[i].any()]:
            skipped.append(Problem(str(m.path), m.records[i].row, None, "none of this run's "
                                   f"modalities ({', '.join(self.modalities)}): row skipped"))
        keep = [i for i in keep if mask[i].any()]
        dims = self.clf.doc["dims"]
        xs = {mod: (x[mod][keep] if mod in x else np.zeros((len(keep), int(dims[mod])),
                                                           np.float32)) for mod in self.modalities}
        preds = self.predict_features(xs, mask[keep]) if keep else []
        skipped.sort(key=lambda p: (p.row or 0, p.column or ""))
        return ManifestPredictions([m.records[i].id for i in keep], preds, skipped, res.warnings)


def _present(i: int, item: Any, modalities: Sequence[str]) -> dict[str, list[Any]]:
    """The modalities an item gives, each as a list of values (texts may be several)."""
    if not isinstance(item, Mapping):
        raise UsageError(f"item {i}: expected a mapping {{modality: path or text}}, got "
                         f"{type(item).__name__}")
    unknown = sorted(set(item) - set(modalities))
    if unknown:
        raise UsageError(f"this run uses {', '.join(modalities)}; got {', '.join(unknown)}")
    out: dict[str, list[Any]] = {}
    for m, v in item.items():
        vals = v if isinstance(v, (list, tuple)) else [v]
        vals = [x for x in vals if x is not None and not (isinstance(x, str) and not x.strip())]
        if vals:
            out[m] = [str(x) if not isinstance(x, str) else x for x in vals]
    if not out:
        raise UsageError(f"item {i}: give at least one of: {', '.join(modalities)}")
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def prediction_rows(problem: str, labels: Sequence[Any] | None, ids: Sequence[str],
                    preds: Sequence[Prediction]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a predictions CSV: ``id,prediction,p_<label>…`` (classification;
    multilabel: the labels joined by ``|``) or ``id,score`` (regression)."""
    if problem == "regression":
        return ["id", "score"], [[i, f"{p.prediction:.6g}"] for i, p in zip(ids, preds)]
    head = ["id", "prediction"] + [f"p_{lab}" for lab in labels or []]
    rows = []
    for i, p in zip(ids, preds):
        pred = "|".join(map(str, p.prediction)) if problem == "multilabel" else p.prediction
        rows.append([i, pred] + [f"{p.probabilities[_plain(lab)]:.6f}" for lab in labels or []])
    return head, rows


def skipped_path(out: str | Path) -> Path:
    """Where `polymodal predict --out OUT` reports skipped rows: ``OUT.skipped.jsonl``."""
    out = Path(out)
    return out.with_name(out.stem + ".skipped.jsonl")


def write_predictions_csv(path: str | Path, model: Classifier, res: ManifestPredictions) -> Path:
    """Write ``res`` as CSV (atomically) and the skipped rows as ``<name>.skipped.jsonl`` next
    to it (never a run folder's own ``skipped.jsonl``)."""
    head, rows = prediction_rows(model.problem, model.labels, res.ids, res.predictions)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    w.writerows(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())
    atomic_write_text(skipped_path(path),
                      "".join(json.dumps(p.to_dict()) + "\n" for p in res.skipped))
    return path
