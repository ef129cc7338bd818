"""Real data: audio-visual digits (MNIST image + FSDD recording of the same digit).

Each modality is made imperfect (pixel noise + a crude random projection for images; a coarse
log-spectrum plus noise for audio), so each alone is mediocre and the two carry complementary
evidence. Every fusion must beat the worse unimodal linear model; at least one must beat the
better one; and a fusion trained with modality dropout must still work with one modality gone.
"""
from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.nn.fusion import FUSIONS, build_fusion, modality_dropout

N_TRAIN, N_TEST, STEPS = 1000, 1000, 200
# small settings so that each fusion trains in ~1-3 s on one CPU core
OPTIONS = {
    "early": {"hidden": 64},
    "weighted": {},
    "late": {"hidden": 32},
    "attention": {"attn_dim": 32},
    "gated": {},
    "tensor": {"proj_dim": 8, "hidden": 64},
    "lowrank": {"proj_dim": 32},
    "cross-attention": {"d_model": 32, "heads": 2, "layers": 1},
}


def _idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def _audio_feature(path: Path, nfft: int = 256, segments: int = 3, bands: int = 24) -> np.ndarray:
    """Mean log power in log-spaced frequency bands, for each third of the recording."""
    import soundfile as sf

    x, _ = sf.read(str(path), dtype="float32")
    if x.ndim > 1:
        x = x.mean(axis=1)
    x = x / (np.abs(x).max() + 1e-8)
    if len(x) < nfft * segments:
        x = np.pad(x, (0, nfft * segments - len(x)))
    frames = x[: len(x) // nfft * nfft].reshape(-1, nfft) * np.hanning(nfft)
    spec = np.log(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-6)
    edges = np.unique(np.geomspace(1, spec.shape[1], bands + 1).astype(int))
    banded = np.stack([spec[:, a:b].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)
    return np.concatenate([s.mean(axis=0) for s in np.array_split(banded, segments, axis=0)])


@pytest.fixture(scope="module")
def digits(shared_data):
    """``(features, labels, train_mask)`` for N_TRAIN + N_TEST image/recording pairs."""
    rng = np.random.default_rng(0)
    n = N_TRAIN + N_TEST
    images = _idx(shared_data / "mnist/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)[:n]
    labels = _idx(shared_data / "mnist/t10k-labels-idx1-ubyte.gz", 8)[:n].astype(int)
    pixels = images.astype(np.float32) / 255 + 0.15 * rng.standard_normal((n, 784))
    img = pixels @ (rng.standard_normal((784, 64)) / 28)
    # FSDD: 25 recordings per digit and speaker; recordings split into train / test pools
    files = sorted(p for p in (shared_data / "fsdd/recordings").glob("*.wav")
                   if int(p.stem.split("_")[2]) < 25)
    rec = np.stack([_audio_feature(p) for p in files])
    rec_digit = np.array([int(p.stem.split("_")[0]) for p in files])
    rec_train = rng.random(len(files)) < 0.6
    rec = (rec - rec[rec_train].mean(0)) / rec[rec_train].std(0)
    rec = rec + 0.6 * rng.standard_normal(rec.shape)
    train = np.arange(n) < N_TRAIN
    pick = [rng.choice(np.flatnonzero((rec_digit == labels[i]) & (rec_train == train[i])))
            for i in range(n)]
    aud = rec[pick]
    img = (img - img[train].mean(0)) / img[train].std(0)
    feats = {"image": torch.tensor(img, dtype=torch.float32),
             "audio": torch.tensor(aud, dtype=torch.float32)}
    return feats, torch.tensor(labels), torch.tensor(train)


def _fit(model, forward, labels, train, steps=STEPS, lr=3e-3, mask_fn=None):
    """Full-batch AdamW on the train rows; returns the trained model (eval mode)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(steps):
        model.train()
        opt.zero_grad()
        mask = mask_fn() if mask_fn else None
        loss = torch.nn.functional.cross_entropy(forward(train, mask), labels[train])
        loss.backward()
        opt.step()
    return model.eval()


def _accuracy(forward, labels, rows, mask=None) -> float:
    with torch.no_grad():
        return (forward(rows, mask).argmax(1) == labels[rows]).float().mean().item()


def _fusion_model(name, dims):
    fusion = build_fusion(name, dims, 10 if FUSIONS[name].produces_logits else 32, **OPTIONS[name])
    head = torch.nn.Identity() if fusion.produces_logits else torch.nn.Linear(32, 10)
    model = torch.nn.ModuleDict({"fusion": fusion, "head": head})

    def forward(feats, rows, mask):
        return head(fusion({k: v[rows] for k, v in feats.items()}, mask))
    return model, forward


def test_every_fusion_beats_unimodal(digits):
    feats, labels, train = digits
    test = ~train
    torch.manual_seed(0)
    uni = {}
    for m, x in feats.items():
        lin = torch.nn.Linear(x.shape[1], 10)
        fwd = lambda rows, mask, lin=lin, x=x: lin(x[rows])  # noqa: E731
        _fit(lin, fwd, labels, train, steps=300, lr=1e-2)
        uni[m] = _accuracy(fwd, labels, test)
    print(f"\nunimodal linear test accuracy: {uni}")
    dims = {k: v.shape[1] for k, v in feats.items()}
    fused = {}
    for name in (n for n in FUSIONS if n in OPTIONS):  # film / relation need pixels
        torch.manual_seed(0)
        model, fwd = _fusion_model(name, dims)
        t = time.perf_counter()
        _fit(model, lambda rows, mask: fwd(feats, rows, mask), labels, train)
        fused[name] = _accuracy(lambda rows, mask: fwd(feats, rows, mask), labels, test)
        print(f"fusion {name:16s} test accuracy {fused[name]:.3f}  ({time.perf_counter() - t:.1f} s)")
    worst, best = min(uni.values()), max(uni.values())
    losers = {n: a for n, a in fused.items() if a <= worst}
    assert not losers, f"fusions not beating the worse unimodal model ({worst:.3f}): {losers}"
    assert max(fused.values()) > best, f"no fusion beats the best unimodal model ({best:.3f})"


def test_modality_dropout_keeps_single_modality_working(digits):
    """Trained with modality dropout, a fusion still predicts when a modality is missing."""
    feats, labels, train = digits
    test = ~train
    dims = {k: v.shape[1] for k, v in feats.items()}
    n_train, n_test = int(train.sum()), int(test.sum())
    full = torch.ones(n_train, 2, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    acc = {}
    for p in (0.0, 0.5):
        torch.manual_seed(0)
        model, fwd = _fusion_model("attention", dims)
        _fit(model, lambda rows, mask: fwd(feats, rows, mask), labels, train,
             mask_fn=lambda: modality_dropout(full, p, generator=g))
        for keep, cols in (("both", [True, True]), ("audio", [True, False]),
                           ("image", [False, True])):  # columns: sorted -> audio, image
            mask = torch.tensor([cols] * n_test)
            acc[p, keep] = _accuracy(lambda rows, m: fwd(feats, rows, m), labels, test, mask)
    print(f"\nattention fusion test accuracy by (dropout p, modalities kept): "
          f"{ {f'{p}/{k}': round(a, 3) for (p, k), a in acc.items()} }")
    for keep in ("audio", "image"):
        assert acc[0.5, keep] > 0.4, f"{keep} only: {acc[0.5, keep]:.3f}"  # chance is 0.1
        assert acc[0.5, "both"] > acc[0.5, keep]
        # training with dropout is what makes the single-modality case work well
        assert acc[0.5, keep] > acc[0.0, keep], f"{keep} only: dropout did not help"
