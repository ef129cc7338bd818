"""``fit retrieval --mlflow DIR``: params, per-epoch metrics and the run folder in a local
MLflow store; the run's run.json carries its provenance."""
from __future__ import annotations

import json

import pytest
from tasks_testdata import write_features

from polymodal.cli import main
from polymodal.data.datasets import sample_path

pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")
pytestmark = pytest.mark.timeout(90)


def test_fit_logs_params_epoch_metrics_and_artifacts(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from polymodal.tasks.tracking import flatten, metric_key, store_uri

    manifest = sample_path("openclipart")
    feats = write_features(tmp_path / "features", manifest, {"text": 384, "image": 1280},
                           {"text": "minilm", "image": "efficientnet-lite0"})
    run, store = tmp_path / "run", tmp_path / "mlstore"
    assert main(["fit", "retrieval", "--manifest", str(manifest), "--features", str(feats),
                 "--relevance", "caption_group", "--loss", "infonce", "--dim", "8",
                 "--hidden", "16", "--epochs", "3", "--patience", "3", "--out", str(run),
                 "--mlflow", str(store), "--no-report", "-q"]) == 0
    assert "mlflow: run " in capsys.readouterr().out
    prov = json.loads((run / "run.json").read_text())["provenance"]
    assert prov["encoders"] == {"text": "minilm", "image": "efficientnet-lite0"}
    assert prov["manifest"]["rows"] == sum(1 for ln in open(manifest, "rb") if ln.strip())
    assert prov["command"][:2] != [] and prov["finished"] >= prov["started"]

    client = MlflowClient(store_uri(store))
    (mrun,) = client.search_runs([client.get_experiment_by_name("polymodal").experiment_id])
    assert mrun.info.status == "FINISHED"
    assert mrun.data.params["loss"] == "infonce" and mrun.data.params["train.epochs"] == "3"
    assert mrun.data.params["encoder.text"] == "minilm"
    history = json.loads((run / "run.json").read_text())["train"]["history"]
    losses = client.get_metric_history(mrun.info.run_id, "train_loss")
    vals = client.get_metric_history(mrun.info.run_id, "val_score")
    assert [m.step for m in losses] == [1, 2, 3] == [h["epoch"] for h in history]
    assert [m.value for m in vals] == pytest.approx([h["val"] for h in history])
    metrics = json.loads((run / "metrics.json").read_text())
    leaves = [(k, v) for k, v in flatten(metrics) if isinstance(v, float)]
    assert leaves and all(mrun.data.metrics[metric_key(k)] == pytest.approx(v) for k, v in leaves)
    names = {a.path for a in client.list_artifacts(mrun.info.run_id, "run")}
    assert {"run/config.yaml", "run/run.json", "run/model.safetensors", "run/index"} <= names
    assert "run/features" not in names  # the feature folder is not copied


def test_missing_run_folder_is_one_line(tmp_path):
    from polymodal.core.errors import PolymodalError
    from polymodal.tasks.tracking import log_run

    with pytest.raises(PolymodalError, match="not a finished run folder"):
        log_run(tmp_path, tmp_path / "store")
