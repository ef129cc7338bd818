"""Fixtures for the serve tests: a small real retrieval run (see serve_testdata.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from serve_testdata import ensure_small_run


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """Folder of a small real text->image retrieval run on 64 OpenClipart drawings."""
    return ensure_small_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def small_classify_run(tmp_path_factory) -> Path:
    """Folder of a small real audio+image digit classification run (60 av-digits rows)."""
    from serve_testdata import ensure_small_classify_run

    return ensure_small_classify_run(tmp_path_factory.getbasetemp())
