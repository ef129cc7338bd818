"""Fixtures for the index tests."""
from __future__ import annotations

import numpy as np
import pytest
from index_testdata import clustered


@pytest.fixture(scope="session")
def data20k() -> tuple[np.ndarray, np.ndarray]:
    """20k database vectors and 200 queries from the same 64-d mixture."""
    x = clustered(20_200, 64, clusters=50, seed=1)
    return x[200:], x[:200]
