"""FID / IS on known cases, and the EfficientNet feature path on real drawings."""
from __future__ import annotations

import numpy as np
import pytest

from polymodal.core.errors import UsageError
from polymodal.metrics.imagegen import (DigitCNN, classifier_outputs, efficientnet_stats, fid,
                                     frechet_distance, inception_score, load_classifier,
                                     save_classifier)


def test_fid_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 8))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_analytic_gaussians():
    d = 4
    mu1, mu2 = np.zeros(d), np.full(d, 2.0)
    # equal covariances: only the mean term ||mu1 - mu2||^2 = 4 * 4 = 16
    assert frechet_distance(mu1, np.eye(d), mu2, np.eye(d)) == pytest.approx(16.0)
    # isotropic s1^2 I vs s2^2 I: d * (s1 - s2)^2 = 4 * (1 - 3)^2 = 16, plus the mean term
    assert frechet_distance(mu1, np.eye(d), mu2, 9 * np.eye(d)) == pytest.approx(32.0)
    # diagonal covariances: sum (sqrt(a_i) - sqrt(b_i))^2
    a, b = np.array([1.0, 4.0, 9.0, 16.0]), np.array([4.0, 4.0, 1.0, 1.0])
    expected = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(b)) == pytest.approx(expected)


def test_fid_of_shifted_gaussian_samples_matches_analytic_value():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20000, 3))
    y = rng.normal(size=(20000, 3)) + np.array([1.0, 0.0, -1.0])
    assert fid(x, y) == pytest.approx(2.0, abs=0.1)


def test_fid_input_errors():
    with pytest.raises(UsageError):
        fid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(UsageError):
        fid(np.zeros((1, 3)), np.zeros((5, 3)))


def test_inception_score_known_cases():
    k = 10
    confident_even = np.eye(k)[np.arange(1000) % k]
    assert inception_score(confident_even)[0] == pytest.approx(k, rel=1e-6)
    all_same = np.tile(np.eye(k)[3], (100, 1))
    assert inception_score(all_same)[0] == pytest.approx(1.0)
    uniform = np.full((100, k), 1 / k)
    assert inception_score(uniform)[0] == pytest.approx(1.0)
    # two equally used classes, each predicted with probability 0.9 / 0.1:
    # KL = 0.9 log(0.9/0.5) + 0.1 log(0.1/0.5)
    p = np.array([[0.9, 0.1], [0.1, 0.9]] * 50)
    kl = 0.9 * np.log(1.8) + 0.1 * np.log(0.2)
    assert inception_score(p)[0] == pytest.approx(np.exp(kl))
    mean, std = inception_score(confident_even, splits=4)
    assert mean == pytest.approx(k, rel=1e-6) and std < 1e-6


def test_classifier_save_load_roundtrip(tmp_path):
    model = DigitCNN(10).eval()
    x = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    p1, f1 = classifier_outputs(model, x)
    save_classifier(model, tmp_path / "cnn.safetensors", list(range(10)))
    loaded, classes = load_classifier(tmp_path / "cnn.safetensors")
    p2, f2 = classifier_outputs(loaded, x)
    assert classes == list(range(10)) and f1.shape == (4, 128)
    np.testing.assert_allclose(p1, p2, atol=1e-6)


def test_efficientnet_fid_separates_drawings_from_noise():
    from PIL import Image

    from polymodal.data.datasets import sample_path
    from polymodal.data.manifest import read_manifest

    recs = read_manifest(sample_path("openclipart")).records[:32]
    imgs = np.stack([np.asarray(Image.open(r.image).convert("RGB").resize((64, 64)),
                                np.float32).transpose(2, 0, 1) / 255 for r in recs])
    noise = np.random.default_rng(0).random(imgs[:16].shape).astype(np.float32)
    feats, probs = efficientnet_stats(np.concatenate([imgs, noise]))
    assert feats.shape == (48, 1280) and probs.shape == (48, 1000)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
    real_a, real_b, fake = feats[:16], feats[16:32], feats[32:]
    assert fid(real_a, real_a) == pytest.approx(0.0, abs=1e-3)
    assert fid(real_a, real_b) < fid(real_a, fake)
