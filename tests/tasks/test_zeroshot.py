"""Zero-shot classification through a text <-> image run (`polymodal eval RUN --zero-shot COL`).

The features are built so the answer is known: every row's image *and* text vector is the real
MiniLM embedding of "a drawing of <its label>" plus noise. A run fitted on them must send the
class prompts (encoded by the real text encoder at evaluation time) next to the images of that
class; a mix-up of sides, prompts or class order drops the accuracy to chance."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polymodal.cli.main import main
from polymodal.data.datasets import sample_path
from polymodal.data.manifest import read_manifest
from polymodal.features.encoders import build_encoder
from polymodal.core.errors import UsageError
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.fit import fit_retrieval
from polymodal.tasks.retrieval.predict import load_run
from polymodal.tasks.retrieval.zeroshot import class_prompts, zero_shot_run

PROMPT = "a drawing of {}"


@pytest.fixture(scope="module")
def label_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("zeroshot")
    manifest = sample_path("openclipart")
    recs = read_manifest(manifest).records
    classes = sorted({str(r.label) for r in recs})
    emb = build_encoder("minilm", modality="text").encode(class_prompts(classes, PROMPT)).numpy()
    y = np.array([classes.index(str(r.label)) for r in recs])
    rng = np.random.default_rng(0)
    feats = tmp / "features"
    feats.mkdir()
    mods = {}
    for m, name in (("text", "minilm"), ("image", "efficientnet-lite0")):
        x = emb[y] + 0.02 * rng.standard_normal((len(y), emb.shape[1]))
        np.save(feats / f"{m}.npy", x.astype(np.float16))
        np.save(feats / f"{m}_rows.npy", np.arange(len(y), dtype=np.int64))
        mods[m] = {"encoder": name, "name": name, "dim": emb.shape[1],
                   "count": len(y)}
    (feats / "ids.json").write_text(json.dumps([r.id for r in recs]))
    (feats / "features.json").write_text(json.dumps({"manifest": str(manifest),
                                                     "n_rows": len(y), "modalities": mods}))
    cfg = RetrievalConfig(manifest=str(manifest), features=str(feats), loss="cca", dim=16)
    fit_retrieval(cfg, tmp / "run", with_baselines=False, progress=False)
    return tmp / "run"


def test_zero_shot_finds_the_class_prompts(label_run):
    res = zero_shot_run(load_run(label_run), "label", PROMPT, progress=False)
    recs = read_manifest(sample_path("openclipart")).records
    test_labels = [str(r.label) for r in recs if r.split == "test"]
    assert res["n_items"] == len(test_labels)
    assert res["n_classes"] == len({str(r.label) for r in recs})
    assert res["chance"] == pytest.approx(1 / res["n_classes"])
    top = max(test_labels.count(c) for c in set(test_labels))
    assert res["majority"] == pytest.approx(top / len(test_labels))
    assert res["accuracy"] > 0.9 > res["majority"], res


def test_zero_shot_cli_and_errors(label_run, capsys):
    assert main(["eval", str(label_run), "--zero-shot", "label", "--prompt", PROMPT, "--json",
                 "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] > 0.9 and out["prompts"][0].startswith("a drawing of ")
    for args, msg in ((["--zero-shot", "nope"], "no such column"),
                      (["--zero-shot", "label", "--prompt", "no slot"], "must contain")):
        assert main(["eval", str(label_run), *args, "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
    with pytest.raises(UsageError, match="must contain"):
        class_prompts(["a"], "x")
