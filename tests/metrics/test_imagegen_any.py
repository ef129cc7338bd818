"""Generation metrics for a labelled image set that is neither digits nor drawings: real MNIST
images relabelled odd / even. The three figures (probe conditional accuracy, IS, FID on
EfficientNet-Lite0 features) are computed, real-vs-real FID is far below real-vs-noise, and
`fit generate` picks these metrics by itself for such a manifest."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from polymodal.data.datasets import sample_path
from polymodal.features.encoders.image import EfficientNetLite0Encoder
from polymodal.metrics.imagegen import efficientnet_stats, fid
from polymodal.metrics.imagegen_labels import fit_probe, labelled_generation_metrics

pytestmark = pytest.mark.timeout(120)
N_TRAIN, N_TEST = 120, 60


@pytest.fixture(scope="module")
def parity_features(shared_data):
    """EfficientNet-Lite0 features of real MNIST digits (labels odd / even) and of noise."""
    with gzip.open(shared_data / "mnist/t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(shared_data / "mnist/t10k-labels-idx1-ubyte.gz") as f:
        digits = np.frombuffer(f.read(), np.uint8, offset=8)
    n = N_TRAIN + N_TEST
    x = images[:n].astype(np.float32) / 255
    parity = ["odd" if d % 2 else "even" for d in digits[:n]]
    noise = np.random.default_rng(0).random((N_TEST, 1, 28, 28)).astype(np.float32)
    enc = EfficientNetLite0Encoder(image_size=96)  # 96 px: the metric code, not the resolution,
    feats, _ = efficientnet_stats(np.concatenate([x, noise]), enc)  # is under test (fast)
    return {"train": feats[:N_TRAIN], "test": feats[N_TRAIN:n], "noise": feats[n:],
            "y_train": parity[:N_TRAIN], "y_test": parity[N_TRAIN:]}


def test_three_figures_and_real_beats_noise(parity_features):
    f = parity_features
    real = labelled_generation_metrics(f["test"], f["y_test"], f["test"], f["y_test"],
                                       f["train"], f["y_train"], n_reference=N_TEST)
    noise = labelled_generation_metrics(f["noise"], f["y_test"], f["test"], f["y_test"],
                                        f["train"], f["y_train"], n_reference=N_TEST)
    acc = [k for k in real if k.startswith("conditional accuracy")]
    is_ = [k for k in real if k.startswith("IS (")]
    fid_ = [k for k in real if k.startswith("FID (")]
    assert len(acc) == len(is_) == len(fid_) == 1 and "2 classes" in acc[0]
    assert "EfficientNet-Lite0" in fid_[0] and "Inception" in real["feature network"]
    # the probe reads parity from real digits well above chance (0.5)
    assert real["reference: probe accuracy on real test images"] > 0.7
    assert real[acc[0]] == real["reference: probe accuracy on real test images"]
    chance = real["reference: chance (share of the most requested label)"]
    assert 0.5 <= chance < real[acc[0]]
    assert 1.0 <= real[is_[0]] <= 2.0 and 1.0 <= noise[is_[0]] <= 2.0
    ref = real["reference: FID real train vs real test (EfficientNet-Lite0 pool features)"]
    assert real[fid_[0]] == pytest.approx(0.0, abs=1e-3)  # identical sets
    assert 0 < ref < 0.5 * noise[fid_[0]], (ref, noise[fid_[0]])
    assert fid(f["train"][:N_TEST], f["test"]) < fid(f["noise"], f["test"])


def test_probe_rejects_a_single_class(parity_features):
    from polymodal.core.errors import DataError

    with pytest.raises(DataError, match="at least 2 classes"):
        fit_probe(parity_features["train"], ["odd"] * N_TRAIN)


@pytest.mark.slow
def test_fit_generate_scores_a_relabelled_set(tmp_path):
    """`fit generate` on the bundled av-digits sample relabelled odd / even (conditioned on the
    digit's word) chooses the 'labels' metrics and prints all three figures."""
    from polymodal.tasks.generate.config import GenerateConfig
    from polymodal.tasks.generate.fit import fit_generate, format_generate_metrics
    from polymodal.train.config import TrainConfig

    src = sample_path("av-digits")
    rows = [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    for r in rows:
        r["image"] = str(src.parent / r["image"])
        r.pop("audio")
        r["label"] = "odd" if int(r["label"]) % 2 else "even"
    man = tmp_path / "parity.jsonl"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = GenerateConfig(manifest=str(man), model="cvae", batch_size=32, n_eval=100,
                         train=TrainConfig(epochs=8, lr=2e-3, patience=8, progress=False))
    res = fit_generate(cfg, tmp_path / "run", progress=False)
    m = res["metrics"]
    assert res["metric_kind"] == "labels"
    text = format_generate_metrics(res)
    for key in ("conditional accuracy (linear probe", "IS (linear probe",
                "FID (EfficientNet-Lite0", "reference: FID real train vs real test"):
        assert key in text
    assert m["reference: probe accuracy on real test images"] > 0.6
    assert m["n_generated"] == 100
