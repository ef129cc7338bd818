"""Fixtures for task tests: a retrieval run fitted in seconds on the bundled OpenClipart sample
manifest with a pre-encoded feature folder of random vectors (``RetrievalConfig.features``)."""
from __future__ import annotations

from pathlib import Path

import pytest
from tasks_testdata import write_features

from polymodal.data.datasets import sample_path
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.fit import fit_retrieval


@pytest.fixture(scope="session")
def random_feature_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("random-feature-run")
    manifest = sample_path("openclipart")
    feats = write_features(tmp / "features", manifest, {"text": 384, "image": 1280},
                           {"text": "minilm", "image": "efficientnet-lite0"})
    cfg = RetrievalConfig(manifest=str(manifest), features=str(feats), loss="cca", dim=8,
                          relevance="caption_group")
    fit_retrieval(cfg, tmp / "run", with_baselines=False, progress=False)
    return tmp / "run"
