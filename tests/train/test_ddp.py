"""Multi-process training (`polymodal.train.dist`): 2 processes started by torchrun on this
machine (gloo, CPU) train like 1 process with the same global batch, and only rank 0 writes.

The features are the bundled OpenClipart sample's rows with vectors generated here with a shared
latent per caption group (so the heads learn something within a few epochs, in seconds)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from polymodal.cli.main import main as cli_main
from polymodal.data.datasets import sample_path
from polymodal.data.manifest import read_manifest
from polymodal.tasks.classify.config import ClassifierConfig
from polymodal.tasks.classify.fit import fit_classifier
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.fit import fit_retrieval

pytestmark = pytest.mark.timeout(240)
WORKER = Path(__file__).with_name("ddp_worker.py")
MANIFEST = sample_path("openclipart")


def learnable_features(folder: Path, manifest: Path) -> Path:
    """A feature folder (`polymodal encode --out` layout, default encoder names) whose text and
    image vectors are noisy linear views of one latent per caption group."""
    rng = np.random.default_rng(0)
    recs = read_manifest(manifest).records
    raw = [json.loads(line) for line in Path(manifest).read_text().splitlines() if line]
    groups = np.array([r["caption_group"] for r in raw])
    latent = rng.standard_normal((groups.max() + 1, 16))[groups]
    folder.mkdir(parents=True)
    mods = {}
    for m, d, name in (("text", 48, "minilm"), ("image", 64, "efficientnet-lite0")):
        rows = np.repeat(np.arange(len(recs)), [len(r.text) if m == "text" else 1 for r in recs])
        x = latent[rows] @ rng.standard_normal((16, d)) + 0.5 * rng.standard_normal((len(rows), d))
        np.save(folder / f"{m}.npy", x.astype(np.float16))
        np.save(folder / f"{m}_rows.npy", rows.astype(np.int64))
        mods[m] = {"encoder": name, "name": name, "dim": d, "count": len(rows)}
    (folder / "ids.json").write_text(json.dumps([r.id for r in recs]))
    (folder / "features.json").write_text(json.dumps({"manifest": str(manifest),
                                                      "n_rows": len(recs), "modalities": mods}))
    return folder


@pytest.fixture(scope="module")
def feats(tmp_path_factory) -> Path:
    return learnable_features(tmp_path_factory.mktemp("ddp") / "features", MANIFEST)


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=200)


def retrieval_config(feats: Path, **kw) -> RetrievalConfig:
    train = {"epochs": 3, "patience": 10, "progress": False, **kw.pop("train", {})}
    return RetrievalConfig(manifest=str(MANIFEST), features=str(feats), query="text",
                           target="image", loss="infonce", relevance="caption_group",
                           head="mlp", hidden=64, dim=32, dropout=0.0, train=train, **kw)


def assert_same_run(one: Path, two: Path, atol: float = 2e-3) -> None:
    """Same metrics, losses (float tolerance) and weights (Adam amplifies rounding a little)."""
    m1, m2 = (json.loads((p / "metrics.json").read_text()) for p in (one, two))
    assert m1.keys() == m2.keys()
    for k in m1:
        if isinstance(m1[k], dict):
            for name, v in m1[k].items():
                assert m2[k][name] == pytest.approx(v, abs=1e-6), (k, name)
    l1, l2 = (np.loadtxt(p / "train_log.csv", delimiter=",", skiprows=1, ndmin=2)
              for p in (one, two))
    assert l1.shape == l2.shape and len(l1) > 0
    np.testing.assert_allclose(l2, l1, rtol=1e-4, atol=1e-5)
    w1, w2 = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=atol, rtol=0, msg=k)


def test_gathered_and_sharded_gradients_equal_the_one_process_gradient(tmp_path):
    """5 rows (3 + 2) and 1 row (1 + 0: a rank with no rows still joins every collective)."""
    sys.path.insert(0, str(WORKER.parent))
    try:
        from ddp_worker import grad_case
    finally:
        sys.path.remove(str(WORKER.parent))
    (tmp_path / "jobs.json").write_text(json.dumps([{"grads": str(tmp_path)}]))
    p = torchrun(str(WORKER), str(tmp_path / "jobs.json"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"grads-{r}.pt") for r in (0, 1)]
    for n in (5, 1):
        want = grad_case(n, n)
        for got in ranks:
            assert got[n].keys() == want.keys()
            for k in want:
                torch.testing.assert_close(got[n][k], want[k], atol=1e-6, rtol=1e-5,
                                           msg=f"{n} rows: {k}")
        for k in want:  # the ranks hold the very same averaged gradient
            assert torch.equal(ranks[0][n][k], ranks[1][n][k])


def test_torchrun_fit_retrieval_with_uneven_batches_equals_one_process(feats, tmp_path):
    """Batch 55 over 2 ranks: 28 + 27 rows, 5 batches per epoch (311 training pairs)."""
    args = ["fit", "retrieval", "--manifest", str(MANIFEST), "--features", str(feats),
            "--query", "text", "--target", "image", "--loss", "infonce",
            "--relevance", "caption_group", "--head", "mlp", "--hidden", "64", "--dim", "32",
            "--dropout", "0", "--batch-size", "55", "--epochs", "3", "--no-report", "-q"]
    p = torchrun("-m", "polymodal", *args, "--out", "run2", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("run folder:") == 1 and p.stdout.count("infonce    text->image") == 1
    assert cli_main([*args, "--out", str(tmp_path / "run1")]) == 0
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run1", "run2"]
    assert (tmp_path / "run2" / "COMPLETE").is_file()
    steps = np.loadtxt(tmp_path / "run1" / "train_log.csv", delimiter=",", skiprows=1)
    assert (steps[:, 0] == 1).sum() % 2 == 1  # an odd number of batches per epoch
    assert_same_run(tmp_path / "run1", tmp_path / "run2")


def test_single_batch_classify_and_resume_under_two_processes_equal_one_process(feats, tmp_path):
    """One launch: a retrieval fit with a single batch per epoch (the old loop let rank 1 write an
    untrained run), a classify fit (per-row loss; batch 45: 23 + 22 rows, last batch uneven)
    and a retrieval fit stopped after 2 epochs and resumed to 4 (every rank reads rank 0's
    checkpoint) against the same fits in one process."""
    single = retrieval_config(feats, batch_size=10_000)
    cls = ClassifierConfig(manifest=str(MANIFEST), features=str(feats), target="label",
                           fusion="early", fusion_options={"dropout": 0.0}, hidden=32,
                           dropout=0.0, batch_size=45,
                           train={"epochs": 3, "patience": 10, "progress": False})
    res = {"lr_schedule": "constant", "patience": 10}
    two, one = tmp_path / "two", tmp_path / "one"
    jobs = [{"task": "retrieval", "config": single.model_dump(), "out": str(two / "single")},
            {"task": "classify", "config": cls.model_dump(), "out": str(two / "cls")},
            {"task": "retrieval", "out": str(two / "resumed"),
             "config": retrieval_config(feats, train={**res, "epochs": 2}).model_dump()},
            {"task": "retrieval", "out": str(two / "resumed"), "resume": True,
             "config": retrieval_config(feats, train={**res, "epochs": 4}).model_dump()}]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    p = torchrun(str(WORKER), str(tmp_path / "jobs.json"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    results = [line.split() for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 2 * len(jobs)
    for _, rank, *keys in results:  # rank 1 trains, evaluates nothing and writes nothing
        assert ("metrics" in keys) == (rank == "0") and ("rank" in keys) == (rank == "1")
    assert sorted(x.name for x in two.iterdir()) == ["cls", "resumed", "single"]
    fit_retrieval(single, one / "single", with_baselines=False, progress=False)
    fit_classifier(cls, one / "cls", progress=False)
    fit_retrieval(retrieval_config(feats, train={**res, "epochs": 4}), one / "resumed",
                  with_baselines=False, progress=False)
    assert len(np.loadtxt(one / "single" / "train_log.csv", delimiter=",", skiprows=1)) == 3
    for name in ("single", "resumed"):
        assert_same_run(one / name, two / name)
    c1, c2 = (json.loads((p / "cls" / "metrics.json").read_text()) for p in (one, two))
    for k, v in c1["metrics"].items():
        assert c2["metrics"][k] == pytest.approx(v, abs=1e-6), k
    w1, w2 = (load_file(p / "cls" / "model.safetensors") for p in (one, two))
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=2e-3, rtol=0, msg=k)


def test_commands_without_multi_process_support_refuse_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli_main(["fit", "caption", "--manifest", str(MANIFEST), "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "fit retrieval" in err and len(err.splitlines()) == 1
