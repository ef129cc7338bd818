"""Generation metrics for any labelled image set, on a named feature network.

The feature network is the bundled ImageNet EfficientNet-Lite0 (1280-d pooled features,
`polymodal.metrics.imagegen.efficientnet_stats`); Inception-v3, which published FID / IS use,
is not available offline, so these figures are NOT comparable with published ones. A
multinomial logistic-regression *probe* (a linear head on the standardised features) is
trained here on the real training images' features with the manifest's own labels; it gives

* conditional accuracy: the share of generated images the probe reads as the label that was
  asked for (references: the probe's accuracy on real test images, and chance = the share of
  the most requested label, what a generator drawing one class only would reach);
* IS: exp(E KL(p(y|x) || p(y))) of the probe's class probabilities over the manifest's labels
  (1 .. K; reference: IS of real test images);
* FID: Fréchet distance of the pooled features, generated vs real test (reference: real
  train vs real test).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from polymodal.core.errors import DataError
from polymodal.metrics.imagegen import fid, inception_score

NETWORK = "EfficientNet-Lite0"


@dataclass
class LinearProbe:
    """Logistic regression on standardised features: ``softmax(((x - mean) / std) @ w + b)``."""

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray  # [D, K]
    bias: np.ndarray  # [K]
    classes: list

    def proba(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, np.float32) - self.mean) / self.std
        logits = z @ self.weight + self.bias
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Class indices (into ``classes``)."""
        return self.proba(features).argmax(1)


def fit_probe(features: np.ndarray, labels: Sequence, l2: float = 1e-2, steps: int = 200,
              seed: int = 0) -> LinearProbe:
    """Full-batch L-BFGS logistic regression of ``labels`` (any hashable values; classes in
    sorted order) on ``features [N, D]``; ``l2`` is the penalty on the weights (per row)."""
    x = np.asarray(features, np.float32)
    classes = sorted(set(labels), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise DataError(f"the probe needs at least 2 classes among the training labels, got "
                        f"{classes}")
    if len(x) != len(labels):
        raise DataError(f"{len(x)} feature rows but {len(labels)} labels")
    index = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([index[v] for v in labels])
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    z = torch.from_numpy((x - mean) / std)
    torch.manual_seed(seed)
    w = torch.zeros(x.shape[1], len(classes), requires_grad=True)
    b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, y) + l2 * (w * w).sum() / 2
        loss.backward()
        return loss

    opt.step(closure)
    return LinearProbe(mean.astype(np.float32), std, w.detach().numpy(), b.detach().numpy(),
                       classes)


def labelled_generation_metrics(fake: np.ndarray, fake_labels: Sequence, real_test: np.ndarray,
                                test_labels: Sequence, real_train: np.ndarray,
                                train_labels: Sequence, n_reference: int | None = None,
                                seed: int = 0) -> dict[str, float | int | str]:
    """The three figures (see module doc) from pooled features of generated images (``fake``,
    with the labels asked for), real test and real train images. The probe trains on
    ``real_train``; the FID reference uses ``n_reference`` (default ``len(fake)``) of the
    train rows, so that both FIDs compare sets of the same size with the test set."""
    probe = fit_probe(real_train, list(train_labels), seed=seed)
    index = {c: i for i, c in enumerate(probe.classes)}
    unknown = sorted({str(v) for v in list(fake_labels) + list(test_labels)} -
                     {str(c) for c in probe.classes})
    if unknown:
        raise DataError(f"labels {unknown[:3]} do not occur among the training labels")
    pf, pt = probe.proba(fake), probe.proba(real_test)
    yf = np.array([index[v] for v in fake_labels])
    yt = np.array([index[v] for v in test_labels])
    k = n_reference or len(fake)
    ref = real_train[np.random.default_rng(seed).permutation(len(real_train))[:k]]
    net = f"{NETWORK} pool features"
    probe_name = f"linear probe on {NETWORK} features, {len(probe.classes)} classes, trained here"
    return {
        "feature network": f"{NETWORK} (ImageNet); Inception-v3 is not available offline, so "
                           "FID / IS are not comparable with published figures",
        "n_probe_train": int(len(real_train)),
        f"conditional accuracy ({probe_name})": float((pf.argmax(1) == yf).mean()),
        f"IS ({probe_name})": inception_score(pf)[0],
        f"FID ({net})": fid(fake, real_test),
        "reference: probe accuracy on real test images": float((pt.argmax(1) == yt).mean()),
        "reference: chance (share of the most requested label)": float(
            np.bincount(yf, minlength=len(probe.classes)).max() / max(1, len(yf))),
        "reference: IS of real test images": inception_score(pt)[0],
        f"reference: FID real train vs real test ({net})": fid(ref, real_test),
    }


__all__ = ["LinearProbe", "NETWORK", "fit_probe", "labelled_generation_metrics"]
