"""Shared fixtures. Real data lives in ../shared/data; tests that need it skip when absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POLYMODAL_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data (or $POLYMODAL_SHARED_DATA); skips the test when absent."""
    if not (SHARED / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED} (set POLYMODAL_SHARED_DATA)")
    return SHARED


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """One feature cache for the test session (never the user's ~/.cache). The cache is
    content-addressed, so sharing it is safe; tests of caching pass their own cache_dir."""
    old = os.environ.get("POLYMODAL_CACHE")
    os.environ["POLYMODAL_CACHE"] = str(tmp_path_factory.mktemp("feature-cache"))
    yield
    if old is None:
        os.environ.pop("POLYMODAL_CACHE", None)
    else:
        os.environ["POLYMODAL_CACHE"] = old


@pytest.fixture(scope="session")
def serve_testdata():
    """The module tests/serve/serve_testdata.py: small real runs, fitted once per session and
    shared by the serve and report tests."""
    import importlib.util
    import sys

    if "serve_testdata" not in sys.modules:
        path = Path(__file__).resolve().parent / "serve" / "serve_testdata.py"
        spec = importlib.util.spec_from_file_location("serve_testdata", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["serve_testdata"] = module
    return sys.modules["serve_testdata"]
