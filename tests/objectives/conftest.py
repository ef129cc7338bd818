"""Real paired features for the alignment tests: the left and right halves of MNIST digits
(the classic two-view set of Andrew et al. 2013), read with numpy from the shared data folder."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest


def read_mnist(root: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``n`` test images as float32 ``[n, 28, 28]`` in [0, 1] and their labels."""
    with gzip.open(root / "mnist" / "t10k-images-idx3-ubyte.gz") as fh:
        raw = np.frombuffer(fh.read(), dtype=np.uint8, offset=16)
    with gzip.open(root / "mnist" / "t10k-labels-idx1-ubyte.gz") as fh:
        labels = np.frombuffer(fh.read(), dtype=np.uint8, offset=8)
    return raw.reshape(-1, 28, 28)[:n].astype(np.float32) / 255.0, labels[:n].astype(np.int64)


@pytest.fixture(scope="session")
def mnist(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    return read_mnist(shared_data, 2000)


@pytest.fixture(scope="session")
def halves(mnist) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left half [n, 392], right half [n, 392], digit labels [n]) of real MNIST images."""
    images, labels = mnist
    return (images[:, :, :14].reshape(len(images), -1), images[:, :, 14:].reshape(len(images), -1),
            labels)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Small matrices: one torch / BLAS thread. On a busy 2-core machine two spinning threads
    per process make these tests 10-50x slower."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)
