"""``--mlflow DIR``: log a finished run folder to a local MLflow store.

MLflow is optional (``pip install 'polymodal[mlflow]'``) and imported only here, lazily. The
store is ``DIR/mlflow.db`` (SQLite: MLflow 3 refuses a plain file store unless told to) with
the artifacts under ``DIR/artifacts``; browse it with
``mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db``. What is logged, all read from the
run folder after the fit (the training loop is not touched):

- params: the task config of ``config.yaml`` flattened (``train.lr``, …), the task, the
  encoder ids and the git commit of the provenance;
- metrics per epoch (``step`` = epoch): ``train_loss`` (mean of the epoch's steps in
  ``train_log.csv``) and, when the fit recorded them in ``run.json``, ``val_score``;
- final metrics: the numeric leaves of ``metrics.json`` (``test.R@10``, …);
- artifacts: every file of the run folder except the feature folder (``run/``).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterator

import yaml

from polymodal.core.errors import PolymodalError
from polymodal.core.lazy import need

EXPERIMENT = "polymodal"
INSTALL_HINT = "pip install 'polymodal[mlflow]'"
SKIP_DIRS = ("features", "eval_features")  # large and re-creatable: not copied as artifacts


def need_mlflow() -> Any:
    """Import mlflow or raise a one-line error naming the extra."""
    return need("mlflow", "sqlalchemy",  # sqlalchemy: the SQLite store
                message=f"--mlflow needs MLflow and SQLAlchemy, which are not installed; "
                        f"install them with: {INSTALL_HINT}")


def store_uri(directory: str | Path) -> str:
    return f"sqlite:///{Path(directory).expanduser().resolve() / 'mlflow.db'}"


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, leaf)`` pairs of nested mappings (lists are leaves)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], obj


def metric_key(key: str) -> str:
    """MLflow keys allow letters, digits, _ - . / and space; others become _."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def epoch_history(run: Path) -> list[dict[str, float]]:
    """Per-epoch ``{"epoch", "train_loss"[, "val_score"]}`` of a run folder: losses from
    ``train_log.csv`` (mean per epoch), validation scores from ``run.json``'s
    ``train.history`` when the fit recorded one."""
    losses: dict[int, list[float]] = {}
    try:
        with open(run / "train_log.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                losses.setdefault(int(r["epoch"]), []).append(float(r["loss"]))
    except (OSError, KeyError, ValueError):
        pass
    out = {e: {"epoch": e, "train_loss": sum(v) / len(v)} for e, v in sorted(losses.items())}
    try:
        hist = json.loads((run / "run.json").read_text()).get("train", {}).get("history") or []
    except (OSError, ValueError, AttributeError):
        hist = []
    for h in hist if isinstance(hist, list) else []:
        if isinstance(h, dict) and isinstance(h.get("epoch"), int):
            row = out.setdefault(h["epoch"], {"epoch": h["epoch"]})
            for src, dst in (("val", "val_score"), ("loss", "train_loss")):
                if isinstance(h.get(src), (int, float)):
                    row.setdefault(dst, float(h[src]))
    return [out[e] for e in sorted(out)]


def log_run(run: str | Path, directory: str | Path, run_name: str | None = None) -> str:
    """Log a finished run folder to the MLflow store in ``directory``; returns the MLflow
    run id. A one-line error when mlflow is missing or ``run`` is not a finished run."""
    mlflow = need_mlflow()
    run = Path(run)
    if not (run / "COMPLETE").is_file():
        raise PolymodalError(f"{run}: not a finished run folder (no COMPLETE marker)")
    doc = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").is_file() else {}
    prov = info.get("provenance") or {}
    params = {k: v for k, v in flatten(doc.get("config") or {})}
    params["task"] = doc.get("task")
    params.update({f"encoder.{m}": e for m, e in (prov.get("encoders") or {}).items()})
    if prov.get("git"):
        params["git.commit"] = prov["git"]["commit"] + ("-dirty" if prov["git"]["dirty"] else "")
    final = {}
    if (run / "metrics.json").is_file():
        final = {metric_key(k): float(v) for k, v in
                 flatten(json.loads((run / "metrics.json").read_text()))
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    root = Path(directory).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    client = mlflow.tracking.MlflowClient(store_uri(root))
    exp = client.get_experiment_by_name(EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    mrun = client.create_run(exp_id, run_name=run_name or run.name)
    rid = mrun.info.run_id
    try:
        for k, v in params.items():
            client.log_param(rid, metric_key(k)[:250], "" if v is None else str(v)[:6000])
        for row in epoch_history(run):
            for key in ("train_loss", "val_score"):
                if key in row:
                    client.log_metric(rid, key, row[key], step=row["epoch"])
        for k, v in final.items():
            client.log_metric(rid, k, v)
        for p in sorted(run.iterdir()):
            if p.is_dir() and p.name in SKIP_DIRS:
                continue
            if p.is_dir():
                client.log_artifacts(rid, str(p), f"run/{p.name}")
            else:
                client.log_artifact(rid, str(p), "run")
    except Exception:
        client.set_terminated(rid, "FAILED")
        raise
    client.set_terminated(rid, "FINISHED")
    return rid
