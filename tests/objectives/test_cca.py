"""Linear CCA against a known shared latent and on real paired features; deep CCA."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.objectives.cca import DeepCCA, LinearCCA, dcca_loss
from polymodal.core.errors import DataError, PolymodalError, UsageError


def _corrs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(a.shape[1])])


def test_recovers_known_canonical_correlations():
    """x_k = z_k + s_k e, y_k = z_k + t_k e' for a 2-d latent z, plus pure-noise columns, then
    mixed by random invertible maps: the canonical correlations are 1/sqrt((1+s^2)(1+t^2))."""
    rng = np.random.default_rng(0)
    n = 6000
    z = rng.standard_normal((n, 2))
    s, t = np.array([0.3, 0.7]), np.array([0.2, 1.0])
    X = np.hstack([z + s * rng.standard_normal((n, 2)), rng.standard_normal((n, 4))])
    Y = np.hstack([z + t * rng.standard_normal((n, 2)), rng.standard_normal((n, 3))])
    X, Y = X @ rng.standard_normal((6, 6)), Y @ rng.standard_normal((5, 5)) + 3.0
    truth = 1 / np.sqrt((1 + s**2) * (1 + t**2))
    cca = LinearCCA(n_components=3, reg=1e-6).fit(X, Y)
    assert cca.correlations_[:2] == pytest.approx(truth, abs=0.03)
    assert cca.correlations_[2] < 0.1
    Xc, Yc = cca.transform(X, Y)
    assert _corrs(Xc, Yc) == pytest.approx(cca.correlations_, abs=1e-3)
    assert np.abs(np.corrcoef(Xc.T) - np.eye(3)).max() < 1e-3  # uncorrelated components


def test_beats_random_projections_on_real_pairs(halves):
    left, right, _ = halves
    cca = LinearCCA(10, reg=1e-2).fit(left[:1500], right[:1500])
    a, b = cca.transform(left[1500:], right[1500:])
    rng = np.random.default_rng(0)
    ra = left[1500:] @ rng.standard_normal((392, 10))
    rb = right[1500:] @ rng.standard_normal((392, 10))
    held_out, random = _corrs(a, b), np.abs(_corrs(ra, rb))
    assert held_out.mean() > 0.5
    assert held_out.mean() > random.mean() + 0.3


def test_state_roundtrip_and_errors(halves):
    left, right, _ = halves
    cca = LinearCCA(4).fit(left[:300], right[:300])
    again = LinearCCA.from_state(cca.get_state())
    assert np.allclose(again.transform_x(left[300:310]), cca.transform_x(left[300:310]))
    with pytest.raises(UsageError, match="lower --dim"):
        LinearCCA(50).fit(left[:100, :20], right[:100])
    with pytest.raises(UsageError, match="not fitted"):
        LinearCCA(2).transform_x(left)
    bad = left[:100].copy()
    bad[7, 3] = np.nan
    with pytest.raises(DataError, match="row 7, column 3"):
        LinearCCA(2).fit(bad, right[:100])
    with pytest.raises(DataError, match="same number of rows"):
        LinearCCA(2).fit(left[:100], right[:99])
    with pytest.raises(DataError, match="columns"):
        cca.transform_y(right[:5, :10])


def test_linear_cca_is_a_scikit_learn_estimator_without_importing_it(halves):
    """clone / get_params / set_params and a Pipeline work with scikit-learn's own checks
    (warnings as errors), while importing the CCA module does not load scikit-learn."""
    import subprocess
    import sys
    import warnings

    code = ("import sys, polymodal.objectives.cca, polymodal.tasks.retrieval.fit; "
            "print(any(m == 'sklearn' or m.startswith('sklearn.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"

    from sklearn.base import clone
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    left, right, _ = halves
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cca = LinearCCA(4, reg=0.05)
        twin = clone(cca)
        assert twin is not cca and twin.get_params() == {"n_components": 4, "reg": 0.05}
        assert repr(twin) == "LinearCCA(n_components=4, reg=0.05)"
        assert twin.set_params(n_components=3).n_components == 3
        with pytest.raises(ValueError, match="invalid parameter 'k'"):
            twin.set_params(k=3)
        pipe = Pipeline([("scale", StandardScaler()), ("cca", LinearCCA(3))])
        pipe.fit(left[:400], right[:400])
        by_hand = LinearCCA(3).fit(StandardScaler().fit_transform(left[:400]), right[:400])
        scaled = StandardScaler().fit(left[:400]).transform(left[400:420])
        assert np.allclose(pipe.transform(left[400:420]), by_hand.transform_x(scaled))
        assert pipe.fit_transform(left[:400], right[:400]).shape == (400, 3)


def test_dcca_loss_matches_linear_cca():
    rng = np.random.default_rng(1)
    h1 = rng.standard_normal((500, 6))
    h2 = h1 @ rng.standard_normal((6, 6)) + rng.standard_normal((500, 6))
    loss = dcca_loss(torch.tensor(h1), torch.tensor(h2), reg=1e-9)
    total = LinearCCA(6, reg=1e-9).fit(h1, h2).correlations_.sum()
    assert -float(loss) == pytest.approx(total, rel=1e-5)


def test_dcca_loss_gradients_and_batch_check():
    h1 = torch.randn(64, 8, requires_grad=True)
    h2 = (h1.detach() + torch.randn(64, 8)).requires_grad_(True)
    dcca_loss(h1, h2).backward()
    assert torch.isfinite(h1.grad).all() and h1.grad.abs().sum() > 0
    with pytest.raises(PolymodalError, match="batch 8 must be larger than out_dim 8: raise "
                                             "--batch-size or lower --dim"):
        dcca_loss(torch.randn(8, 8), torch.randn(8, 8))


def test_deep_cca_training_raises_held_out_correlation(halves):
    left, right, _ = halves
    torch.manual_seed(0)
    untrained = DeepCCA(392, 392, out_dim=10, hidden=64).fit(left[:1500], right[:1500], epochs=0)
    torch.manual_seed(0)
    model = DeepCCA(392, 392, out_dim=10, hidden=64).fit(left[:1500], right[:1500], epochs=8,
                                                         batch_size=250)
    assert model.history_[-1] < model.history_[0]
    before = _corrs(*untrained.transform(left[1500:], right[1500:])).sum()
    after = _corrs(*model.transform(left[1500:], right[1500:])).sum()
    assert after > before + 2.0
    clone = DeepCCA(392, 392, out_dim=10, hidden=64)
    with pytest.raises(UsageError, match="not fitted"):
        clone.transform_x(left[:5])
    clone.load_state_dict(model.state_dict())
    assert np.allclose(clone.transform_y(right[:20]), model.transform_y(right[:20]))
    with pytest.raises(PolymodalError, match="raise --batch-size"):
        DeepCCA(392, 392, out_dim=10).fit(left[:100], right[:100], batch_size=10)
    with pytest.raises(DataError, match="columns"):
        model.transform_x(left[:5, :100])
