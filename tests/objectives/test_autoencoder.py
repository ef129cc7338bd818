"""Multimodal autoencoder on real paired features (left/right halves of MNIST digits)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.nn.autoencoder import MultimodalAutoencoder, autoencoder_loss
from polymodal.core.errors import DataError, UsageError
from polymodal.metrics.scores import chance_retrieval, retrieval_metrics_from_embeddings


@pytest.fixture(scope="module")
def fitted(halves) -> MultimodalAutoencoder:
    left, right, _ = halves
    torch.manual_seed(0)
    return MultimodalAutoencoder({"left": 392, "right": 392}, latent_dim=32, hidden=128).fit(
        {"left": left[:1500], "right": right[:1500]}, epochs=12)


def _cross_error(model: MultimodalAutoencoder, left: np.ndarray, right: np.ndarray) -> float:
    """Held-out MSE (standardised units) of rebuilding the right half from the left half."""
    with torch.no_grad():
        x, y = torch.tensor(left), torch.tensor(right)
        pred = model.decode(model.encode(x, "left"), "right")
        return float(((pred - model.standardize(y, "right")) ** 2).mean())


def test_training_lowers_loss_and_cross_reconstructs(fitted, halves):
    left, right, _ = halves
    assert fitted.history_[-1] < 0.7 * fitted.history_[0]
    torch.manual_seed(0)
    untrained = MultimodalAutoencoder({"left": 392, "right": 392}, latent_dim=32, hidden=128)
    for m in ("left", "right"):  # same standardisation
        getattr(untrained, f"mean_{m}").copy_(getattr(fitted, f"mean_{m}"))
        getattr(untrained, f"std_{m}").copy_(getattr(fitted, f"std_{m}"))
    trained_err = _cross_error(fitted, left[1500:], right[1500:])
    assert trained_err < _cross_error(untrained, left[1500:], right[1500:])
    # clearly better than predicting the training mean (0 in standardised units)
    with torch.no_grad():
        mean_err = float((fitted.standardize(torch.tensor(right[1500:]), "right") ** 2).mean())
    assert trained_err < 0.9 * mean_err


def test_embed_is_a_usable_aligner(fitted, halves):
    left, right, _ = halves
    a, b = fitted.embed(left[1500:], "left"), fitted.embed(right[1500:], "right")
    assert isinstance(a, np.ndarray) and a.shape == (500, 32)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    ids = np.arange(500)
    r10 = retrieval_metrics_from_embeddings(a, b, ids)["R@10"]
    assert r10 > 10 * chance_retrieval(ids, n_targets=500)["R@10"]
    t = fitted.embed(torch.tensor(left[:4]), "left")
    assert isinstance(t, torch.Tensor)
    assert np.allclose(t.detach().numpy(), fitted.embed(left[:4], "left"), atol=1e-6)


def test_loss_parts_and_alignment_term(halves):
    left, right, _ = halves
    model = MultimodalAutoencoder({"left": 392, "right": 392}, latent_dim=8, hidden=16)
    batch = {"left": torch.tensor(left[:32]), "right": torch.tensor(right[:32])}
    plain, parts = autoencoder_loss(model, batch, cross_weight=1.0, align_weight=0.0)
    assert parts["align"] == 0.0
    assert float(plain.detach()) == pytest.approx(parts["self"] + parts["cross"], rel=1e-5)
    total, parts2 = autoencoder_loss(model, batch, align_weight=0.5, align="cosine")
    assert parts2["align"] > 0
    assert float(total.detach()) == pytest.approx(float(plain.detach()) + 0.5 * parts2["align"],
                                                  rel=1e-5)
    total.backward()
    assert all(p.grad is not None for p in model.encoders.parameters())


def test_errors(fitted, halves):
    left, right, _ = halves
    with pytest.raises(UsageError, match="unknown modality 'audio'"):
        fitted.embed(left[:2], "audio")
    with pytest.raises(DataError, match=r"\[n, 392\]"):
        fitted.embed(left[:2, :10], "left")
    with pytest.raises(DataError, match="same number of rows"):
        MultimodalAutoencoder({"a": 392, "b": 392}).fit({"a": left[:10], "b": right[:9]})
    with pytest.raises(DataError, match="needs features"):
        MultimodalAutoencoder({"a": 392, "b": 392}).fit({"a": left[:10]})
    with pytest.raises(UsageError, match=">= 2 modalities"):
        MultimodalAutoencoder({"a": 3})
    with pytest.raises(UsageError, match="unknown loss"):
        autoencoder_loss(fitted, {"left": torch.tensor(left[:4]), "right": torch.tensor(right[:4])},
                         align_weight=1.0, align="nope")
