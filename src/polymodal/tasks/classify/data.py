"""Data side of the prediction task: targets, splits, per-row features and masks, metrics.

Targets: ``"label"`` (the label role) or an extra manifest column. ``task="auto"`` picks
*multilabel* when cells hold lists, *regression* when every value is a number and there are
more than `REGRESSION_MIN_DISTINCT` distinct values, else *classification*. Multilabel cells
are lists, JSON lists (``'["a", "b"]'``) or strings separated by ``|`` or ``;``.

Splits: the shared policy of `polymodal.core.splits` (given cells kept row by row, empty cells
hashed, val carved from labelled train rows only), written to ``RUN/splits.csv``.
"""
from __future__ import annotations

import csv
import gc
import io
import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from polymodal.features.cache.features import FeatureSet
from polymodal.data.manifest import Manifest
from polymodal.core.splits import assign_splits, check_split_counts, split_cells
from polymodal.core.errors import DataError, PolymodalError, Problem, UsageError

REGRESSION_MIN_DISTINCT = 20


@dataclass
class ClassData:
    """Rows usable for prediction: features, modality mask, targets and split."""

    ids: list[str]
    row: np.ndarray  # 1-based manifest data row (for messages)
    x: dict[str, np.ndarray]  # modality -> float32 [N, d] (zeros where missing)
    mask: np.ndarray  # bool [N, M], columns = modalities
    modalities: list[str]  # sorted
    y: np.ndarray  # int [N] | float [N] | float [N, C] (multilabel)
    has_y: np.ndarray  # bool [N]: the row has a target
    split: np.ndarray  # str [N]: train / val / test

    def take(self, idx: np.ndarray) -> "ClassData":
        """The rows ``idx`` (integer indices)."""
        return ClassData([self.ids[i] for i in idx], self.row[idx],
                         {m: v[idx] for m, v in self.x.items()}, self.mask[idx],
                         self.modalities, self.y[idx], self.has_y[idx], self.split[idx])

    def select(self, split: str | None) -> "ClassData":
        """Labelled rows of one split (``None``: every labelled row)."""
        keep = self.has_y if split is None else self.has_y & (self.split == split)
        return self.take(np.flatnonzero(keep))

    def index(self, row_id: str) -> int:
        """Position of manifest id ``row_id`` (a `UsageError` naming some valid ids if absent)."""
        try:
            return self.ids.index(str(row_id))
        except ValueError:
            raise UsageError(f"unknown row id '{row_id}'; ids look like "
                             f"{', '.join(self.ids[:3])}{' …' if len(self.ids) > 3 else ''}"
                             ) from None


def _missing(v: Any) -> bool:
    return (v is None or (isinstance(v, float) and math.isnan(v))
            or (isinstance(v, str) and not v.strip()) or (isinstance(v, (list, tuple)) and not v))


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float, np.number)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


def _canon(v: Any) -> Any:
    """One label value as a YAML-friendly int, float or str."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return int(v) if float(v).is_integer() else float(v)
    return str(v).strip()


def _sort_key(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


def _label_set(v: Any) -> list:
    if isinstance(v, str):
        s = v.strip()
        parsed = None
        if s.startswith("["):
            try:
                parsed = json.loads(s)
            except ValueError:
                parsed = None
        v = parsed if isinstance(parsed, list) else re.split(r"[|;]", s)
    items = v if isinstance(v, (list, tuple)) else [v]
    return sorted({_canon(x) for x in items if not _missing(x)}, key=_sort_key)


def detect_task(values: Sequence[Any]) -> str:
    """"multilabel", "regression" or "classification" for a column's values (see module doc)."""
    vals = [v for v in values if not _missing(v)]
    if any(isinstance(v, (list, tuple)) for v in vals):
        return "multilabel"
    nums = [_number(v) for v in vals]
    if vals and all(n is not None and math.isfinite(n) for n in nums) \
            and len(set(nums)) > REGRESSION_MIN_DISTINCT:
        return "regression"
    return "classification"


def target_values(manifest: Manifest, target: str) -> tuple[list[Any], str]:
    """(value of each record, file column name) for ``target`` ("label" or an extra column)."""
    if target == "label" or target == manifest.columns.get("label"):
        if "label" in manifest.columns:
            return [r.label for r in manifest.records], manifest.column_of("label")
    elif target in manifest.extra_columns:
        return [r.extra.get(target) for r in manifest.records], target
    valid = (["label"] if "label" in manifest.columns else []) + list(manifest.extra_columns)
    raise UsageError(f"{manifest.path}: target column '{target}' not found; valid targets: "
                     f"{', '.join(valid) or '(none: add a label column)'}")


def encode_targets(values: Sequence[Any], rows: Sequence[int], problem: str, file: str,
                   column: str, spec: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Targets as arrays ``(y, has_y, spec)``; ``spec`` holds the label vocabulary. A given
    ``spec`` (from a saved run) fixes the vocabulary; unknown labels count as unlabelled."""
    n = len(values)
    has = np.array([not _missing(v) for v in values], bool)
    if problem == "regression":
        y = np.zeros(n, np.float32)
        for i in np.flatnonzero(has):
            num = _number(values[i])
            if num is None or not math.isfinite(num):
                raise DataError(f"column '{column}' row {rows[i]}: {values[i]!r} is not a number "
                                f"(regression target; use task classification for "
                                f"categories)", file=file, row=int(rows[i]), column=column)
            y[i] = num
        return y, has, dict(spec or {"problem": "regression"})
    if problem == "multilabel":
        sets = [_label_set(v) if h else [] for v, h in zip(values, has)]
        labels = list(spec["labels"]) if spec else sorted({x for s in sets for x in s},
                                                          key=_sort_key)
        pos = {lab: j for j, lab in enumerate(labels)}
        y = np.zeros((n, len(labels)), np.float32)
        for i, s in enumerate(sets):
            y[i, [pos[x] for x in s if x in pos]] = 1.0
        return y, has, {"problem": problem, "labels": labels}
    if problem != "classification":
        raise UsageError(f"unknown task '{problem}'; valid: auto, classification, multilabel, "
                         "regression")
    canon = [_canon(v) if h else None for v, h in zip(values, has)]
    labels = list(spec["labels"]) if spec else sorted({c for c in canon if c is not None},
                                                      key=_sort_key)
    pos = {lab: j for j, lab in enumerate(labels)}
    y = np.array([pos.get(c, -1) if c is not None else -1 for c in canon], np.int64)
    return y, has & (y >= 0), {"problem": problem, "labels": labels}


def check_targets(manifest: Manifest, target: str, task: str = "auto") -> None:
    """What can fail about the target and the splits, checked on the manifest before any
    encoding: the target column exists, its values suit the task, and the split policy leaves
    labelled rows in train (2 or more) and test."""
    values, column = target_values(manifest, target)
    problem = detect_task(values) if task == "auto" else task
    rows = [r.row for r in manifest.records]
    _, has_y, _ = encode_targets(values, rows, problem, str(manifest.path), column)
    check_split_counts(manifest.path, [r.split for r in manifest.records], manifest.ids, has_y,
                       f"a value in column '{column}'", {"train": 2, "test": 1})


def prepare_data(manifest: Manifest, fs: FeatureSet, modalities: Sequence[str], target: str,
                 task: str = "auto", spec: dict | None = None,
                 splits: dict[str, str] | None = None) -> tuple[ClassData, dict, list[Problem]]:
    """Align features with manifest rows, encode targets, assign splits.

    Returns ``(data, spec, problems)``: ``problems`` lists rows skipped because none of
    ``modalities`` is present. Raises clear errors for a missing target column, a text value in
    a regression target, fewer than two classes in the training rows and missing splits."""
    mods = sorted(modalities)
    bad = [m for m in mods if m not in fs.modalities]
    if bad:
        raise UsageError(f"{fs.root}: no '{bad[0]}' features; encoded modalities: "
                         f"{', '.join(fs.modalities) or 'none'}")
    recs, file = manifest.records, str(manifest.path)
    values, column = target_values(manifest, target)
    fitting = spec is None
    problem = spec["problem"] if spec else (detect_task(values) if task == "auto" else task)
    pos = {rid: i for i, rid in enumerate(fs.ids)}
    frow = np.array([pos.get(r.id, -1) for r in recs], np.int64)
    found = frow >= 0
    x, cols = {}, []
    for m in mods:
        v, p = fs.per_row(m)
        xm = np.zeros((len(recs), v.shape[1]), np.float32)
        xm[found] = v[frow[found]]
        xm[~np.isfinite(xm).all(1)] = 0.0  # never happens for encoded folders; be safe
        x[m] = xm
        cols.append(found & np.where(found, p[np.maximum(frow, 0)], False))
    mask = np.stack(cols, 1) if cols else np.zeros((len(recs), 0), bool)
    rows = np.array([r.row for r in recs], np.int64)
    y, has_y, spec = encode_targets(values, rows, problem, file, column, spec)
    problems = [Problem(file, int(rows[i]), None, f"all modalities missing ({', '.join(mods)}): "
                        "row skipped") for i in np.flatnonzero(~mask.any(1))]
    keep = np.flatnonzero(mask.any(1))
    ids = [recs[i].id for i in keep]
    split = assign_splits(split_cells([recs[i] for i in keep], splits), ids, has_y[keep])
    data = ClassData(ids, rows[keep], {m: v[keep] for m, v in x.items()}, mask[keep], mods,
                     y[keep], has_y[keep], split)
    tr = data.select("train")
    if fitting and problem == "regression":
        if len(tr.ids) < 2:
            raise PolymodalError(f"{file}: fewer than 2 training rows with a '{column}' value")
        spec.update(mean=float(tr.y.mean()), std=float(tr.y.std()) or 1.0)
    elif fitting and problem == "classification":
        seen = np.unique(tr.y)
        if len(seen) < 2:
            only = f" ({spec['labels'][int(seen[0])]!r})" if len(seen) else ""
            raise PolymodalError(f"{file}: column '{column}' has {len(seen)} class{only} in the "
                                 f"training rows; classification needs at least 2")
    elif fitting and problem == "multilabel" and len(spec["labels"]) < 1:
        raise PolymodalError(f"{file}: column '{column}' has no labels")
    if fitting and not len(data.select("test").ids):
        raise PolymodalError(f"{file}: no labelled test rows with any of {', '.join(mods)} "
                             "(add a split column with some 'test' rows)")
    return data, spec, problems


def unimodal_prior(train: ClassData, spec: dict) -> np.ndarray:
    """Initial output for rows missing a unimodal baseline's modality: log class frequencies
    (classification), label log-odds (multilabel) or 0 (regression, standardised)."""
    if spec["problem"] == "classification":
        freq = np.bincount(train.y, minlength=len(spec["labels"])) + 1.0
        return np.log(freq / freq.sum()).astype(np.float32)
    if spec["problem"] == "multilabel":
        p = (train.y.sum(0) + 1.0) / (len(train.y) + 2.0)
        return np.log(p / (1 - p)).astype(np.float32)
    return np.zeros(1, np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def decode_outputs(out: np.ndarray, spec: dict) -> tuple[list, np.ndarray]:
    """(predictions, probabilities or values) from raw model outputs."""
    problem, labels = spec["problem"], spec.get("labels")
    if problem == "classification":
        proba = _softmax(out.astype(np.float64))
        return [labels[j] for j in proba.argmax(1)], proba
    if problem == "multilabel":
        proba = 1.0 / (1.0 + np.exp(-out.astype(np.float64)))
        return [[labels[j] for j in np.flatnonzero(r > 0.5)] for r in proba], proba
    values = out[:, 0].astype(np.float64) * spec["std"] + spec["mean"]
    return [float(v) for v in values], values


def primary_metric(problem: str) -> str:
    """The metric robustness curves and importances use: accuracy, or r2 for regression."""
    return "r2" if problem == "regression" else "accuracy"


def score_outputs(y: np.ndarray, out: np.ndarray, spec: dict) -> dict[str, float | None]:
    """Test metrics: accuracy, macro_f1, auroc (multilabel: subset accuracy, mean per-label
    F1 and AUROC) or mae, r2 for regression. A metric that is undefined is None."""
    from polymodal.metrics.scores import accuracy, auroc, mae, macro_f1, r2

    if len(y) == 0:
        return {}
    problem = spec["problem"]
    _, proba = decode_outputs(out, spec)
    if problem == "regression":
        return {"mae": mae(y, proba), "r2": r2(y, proba)}
    if problem == "classification":
        pred = proba.argmax(1)
        res = {"accuracy": accuracy(y, pred), "macro_f1": macro_f1(y, pred)}
        try:
            res["auroc"] = auroc(y, proba)
        except DataError:
            res["auroc"] = None
        return res
    pred = proba > 0.5
    truth = y > 0.5
    tp, fp, fn = (pred & truth).sum(0), (pred & ~truth).sum(0), (~pred & truth).sum(0)
    used = (tp + fp + fn) > 0
    f1 = 2 * tp[used] / np.maximum(2 * tp + fp + fn, 1)[used]
    aucs = []
    for j in range(y.shape[1]):
        if 0 < truth[:, j].sum() < len(y):
            aucs.append(auroc(truth[:, j].astype(int), proba[:, j]))
    return {"accuracy": float(np.mean((pred == truth).all(1))),
            "macro_f1": float(f1.mean()) if used.any() else None,
            "auroc": float(np.mean(aucs)) if aucs else None}


def write_predictions(path: Path, data: ClassData, spec: dict, out: np.ndarray) -> None:
    """Test predictions as CSV: id, target, prediction, confidence, modalities present."""
    from polymodal.core.atomic import atomic_write_text

    pred, proba = decode_outputs(out, spec)
    problem, labels = spec["problem"], spec.get("labels")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "target", "prediction", "confidence", "modalities"])
    for i, rid in enumerate(data.ids):
        present = "+".join(m for j, m in enumerate(data.modalities) if data.mask[i, j])
        if problem == "classification":
            t, c = labels[int(data.y[i])], f"{float(proba[i].max()):.4f}"
        elif problem == "multilabel":
            t = "|".join(str(lab) for lab, v in zip(labels, data.y[i]) if v > 0.5)
            c = f"{float(np.abs(proba[i] - 0.5).min() + 0.5):.4f}"
        else:
            t, c = f"{float(data.y[i]):.6g}", ""
        p = "|".join(map(str, pred[i])) if problem == "multilabel" else pred[i]
        w.writerow([rid, t, f"{p:.6g}" if isinstance(p, float) else p, c, present])
    atomic_write_text(path, buf.getvalue())


def _rss() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            import os

            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class PeakMemory:
    """Peak growth of this process's memory while the ``with`` block runs.

    Linux: resident set size sampled every 5 ms from /proc/self/statm (``method`` "rss
    sampled"), after ``gc.collect()`` + glibc ``malloc_trim`` so memory freed by earlier runs
    is not reused silently. Elsewhere: the growth of ``resource.getrusage`` ru_maxrss
    ("ru_maxrss delta", 0 when an earlier run of the process peaked higher). ``mb``: MiB."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.mb, self.method = interval, 0.0, "rss sampled"
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss() or 0)

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        self._base = _rss()
        if self._base is None:
            import resource

            self.method = "ru_maxrss delta"
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        else:
            self._peak = self._base
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.method == "rss sampled":
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss() or 0)
            self.mb = (self._peak - self._base) / 2**20
        else:
            import resource
            import sys

            unit = 1 if sys.platform == "darwin" else 1024
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._base
            self.mb = max(0, grown) * unit / 2**20
