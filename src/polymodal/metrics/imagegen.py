"""Image-generation metrics: Fréchet distance (FID-style) and Inception-style score, computed
on the features / class probabilities of an offline network, named after that network:

- "FID (digit-CNN features)" / "IS (digit-CNN)": a small CNN trained here on MNIST digits
  (`DigitCNN`; trained by `tasks.generate.data.fit_digit_classifier`); its 128-d penultimate layer and its 10-class softmax.
- "FID (EfficientNet-Lite0 pool features)" / "IS (EfficientNet-Lite0 ImageNet classes)": the
  bundled ImageNet EfficientNet-Lite0 (`efficientnet_stats`), for colour drawings.

These are NOT comparable with published FID / IS numbers (those use Inception-v3 features).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polymodal.core.errors import PolymodalError, UsageError


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians; the real part of
    ``scipy.linalg.sqrtm`` is used, with ``eps * I`` added when the product is singular."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise UsageError(f"Fréchet distance needs equal shapes, got {mu1.shape}/{mu2.shape} "
                         f"and {s1.shape}/{s2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        off = np.eye(len(s1)) * eps
        covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    return float(max(0.0, diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)))


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]``."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise UsageError(f"FID needs two [N, D] feature sets of equal D, got {a.shape} and "
                         f"{b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise UsageError("FID needs at least 2 samples per set")
    if min(len(a), len(b)) < a.shape[1]:  # fewer samples than dimensions: exact and cheaper
        return _fid_sample_space(a, b)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                            np.cov(b, rowvar=False))


def _fid_sample_space(a: np.ndarray, b: np.ndarray) -> float:
    """FID without D x D matrices: with centred data ``A``, ``B`` and ``S = X^T X / (n - 1)``,
    the eigenvalues of ``S_a S_b`` are the squared singular values of ``A B^T`` over
    ``(n_a - 1)(n_b - 1)``, so ``Tr (S_a S_b)^(1/2) = sum(svd(A B^T)) / sqrt((n_a-1)(n_b-1))``
    (exact, and no ``sqrtm`` of a singular matrix)."""
    ca, cb = a - a.mean(0), b - b.mean(0)
    na, nb = len(a) - 1, len(b) - 1
    diff = a.mean(0) - b.mean(0)
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    tr = (ca * ca).sum() / na + (cb * cb).sum() / nb
    return float(max(0.0, diff @ diff + tr - 2 * cross))


def inception_score(probs: np.ndarray, splits: int = 1) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) from class probabilities ``[N, K]``; (mean, std) over
    ``splits`` equal parts. Ranges from 1 (all the same / uniform) to K (confident and even)."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or len(p) < splits or splits < 1:
        raise UsageError(f"inception score needs [N, K] probabilities with N >= splits, got "
                         f"{p.shape} and splits={splits}")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(py + 1e-12))).sum(1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


class DigitCNN(nn.Module):
    """Two conv blocks + a 128-d penultimate layer; input ``[B, 1, 28, 28]`` in [0, 1]."""

    def __init__(self, n_classes: int = 10, channels: int = 1, size: int = 28, width: int = 32):
        super().__init__()
        self.spec = {"n_classes": n_classes, "channels": channels, "size": size, "width": width}
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(2 * width * (size // 4) ** 2, 128), nn.ReLU())
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(128, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.body(x)))


@torch.no_grad()
def classifier_outputs(model: DigitCNN, images: np.ndarray, batch: int = 512
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities ``[N, K]``, penultimate features ``[N, 128]``)."""
    model.eval()
    probs, feats = [], []
    for s in range(0, len(images), batch):
        f = model.features(torch.from_numpy(np.asarray(images[s:s + batch], np.float32)))
        feats.append(f.numpy())
        probs.append(F.softmax(model.head(f), 1).numpy())
    return np.concatenate(probs), np.concatenate(feats)


def predict_proba(model: DigitCNN, images: np.ndarray) -> np.ndarray:
    """Class probabilities of images ``[N, C, S, S]`` in [0, 1]."""
    return classifier_outputs(model, images)[0]


def save_classifier(model: DigitCNN, path: str | Path, classes: Sequence[Any]) -> Path:
    """Weights as safetensors + a ``.json`` sidecar with the spec and class names."""
    from safetensors.torch import save_file

    from polymodal.core.atomic import atomic_path, atomic_write_text

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    atomic_write_text(path.with_suffix(".json"),
                      json.dumps({"spec": model.spec, "classes": list(classes)}))
    return path


def load_classifier(path: str | Path) -> tuple[DigitCNN, list]:
    """(model, classes) saved by `save_classifier`."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        model = DigitCNN(**meta["spec"])
        model.load_state_dict(load_file(str(path)))
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise PolymodalError(f"{path}: cannot load digit classifier ({e})") from None
    return model.eval(), list(meta["classes"])


def efficientnet_stats(images: np.ndarray, encoder: Any = None, batch: int = 32
                       ) -> tuple[np.ndarray, np.ndarray]:
    """EfficientNet-Lite0 (ImageNet) (pooled 1280-d features, 1000-class probabilities) of
    images ``[N, 3, S, S]`` in [0, 1], resized like the encoder resizes files."""
    from PIL import Image

    from polymodal.features.encoders.image import EfficientNetLite0Encoder, to_input

    enc = encoder or EfficientNetLite0Encoder()
    arr = (np.clip(np.asarray(images), 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
    feats, probs = [], []
    for s in range(0, len(arr), batch):
        prep = [enc.prepare(Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).convert("RGB"))
                for a in arr[s:s + batch]]
        f = enc.features(to_input(prep, enc.fast))
        with torch.inference_mode():
            probs.append(F.softmax(enc.model._fc(f), 1).numpy())
        feats.append(f.numpy())
    return np.concatenate(feats), np.concatenate(probs)
