"""Synthetic vectors and a brute-force reference for the index tests (imported by them)."""
from __future__ import annotations

import numpy as np


def clustered(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    """Gaussian mixture near a shared low-dimensional subspace (like real embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    basis = rng.standard_normal((8, dim)).astype(np.float32) / np.sqrt(8)
    c = rng.integers(0, clusters, n)
    z = rng.standard_normal((n, 8)).astype(np.float32)
    noise = rng.standard_normal((n, dim)).astype(np.float32)
    return (centres[c] + 0.6 * z @ basis + 0.1 * noise).astype(np.float32)


def brute_force(db: np.ndarray, q: np.ndarray, k: int, cosine: bool) -> tuple:
    """Reference top-k with plain numpy: (scores, positions)."""
    if cosine:
        db = db / np.linalg.norm(db, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = q.astype(np.float64) @ db.T.astype(np.float64)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, 1), order


def names(n: int, prefix: str = "v") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]
