"""Retrieval baselines on real paired features: left half -> right half of MNIST digits."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from polymodal.core.errors import DataError, UsageError
from polymodal.metrics.baselines import CCAMap, RidgeMap
from polymodal.metrics.scores import chance_retrieval, relevance_from_labels, retrieval_metrics


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def halves(shared_data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with gzip.open(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz") as fh:
        images = np.frombuffer(fh.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)[:2000]
    with gzip.open(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz") as fh:
        labels = np.frombuffer(fh.read(), dtype=np.uint8, offset=8)[:2000]
    x = images.astype(np.float64) / 255
    return x[:, :, :14].reshape(2000, -1), x[:, :, 14:].reshape(2000, -1), labels


@pytest.mark.parametrize("model", [RidgeMap(alpha=10.0), CCAMap(n_components=20, reg=1e-2)],
                         ids=["ridge", "cca"])
def test_baselines_retrieve_real_pairs_far_above_chance(halves, model):
    left, right, labels = halves
    sim = model.fit(left[:1500], right[:1500]).score(left[1500:], right[1500:])
    assert sim.shape == (500, 500)
    ids = np.arange(500)
    m, chance = retrieval_metrics(sim, ids), chance_retrieval(ids, n_targets=500)
    assert m["R@1"] > 25 * chance["R@1"] and m["R@10"] > 0.3
    # random projections of both halves into a common space do far worse
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((392, 20))
    rand = retrieval_metrics(_cos(left[1500:] @ proj, right[1500:] @ proj), ids)
    assert m["R@10"] > rand["R@10"] + 0.2
    # same-digit retrieval (many relevant targets per query) also beats chance
    rel = relevance_from_labels(labels[1500:], labels[1500:])
    assert retrieval_metrics(sim, rel)["mAP"] > 2 * chance_retrieval(rel)["mAP"]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    return a @ b.T


@pytest.mark.parametrize("n", [300, 100])  # primal (n >= d) and dual (n < d) solutions
def test_ridge_matches_sklearn(n):
    rng = np.random.default_rng(n)
    X, Y = rng.standard_normal((n, 150)), rng.standard_normal((n, 7))
    ours = RidgeMap(alpha=3.0).fit(X, Y)
    ref = Ridge(alpha=3.0).fit(X, Y)
    Xt = rng.standard_normal((5, 150))
    assert np.allclose(ours.coef_, ref.coef_.T, atol=1e-8)
    assert np.allclose(ours.predict(Xt), ref.predict(Xt), atol=1e-8)


def test_errors(halves):
    left, right, _ = halves
    with pytest.raises(DataError, match="paired rows"):
        RidgeMap().fit(left[:10], right[:9])
    with pytest.raises(UsageError, match="not fitted"):
        RidgeMap().score(left[:3], right[:3])
    with pytest.raises(UsageError, match="not fitted"):
        CCAMap().score(left[:3], right[:3])
    with pytest.raises(DataError, match="columns"):
        RidgeMap().fit(left[:50], right[:50]).score(left[:3, :5], right[:3])
    with pytest.raises(UsageError, match="alpha"):
        RidgeMap(alpha=-1)
