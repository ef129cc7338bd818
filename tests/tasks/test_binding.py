"""Emergent binding: `fit retrieval --pivot image --pairs audio-image,text-image` trains with no
audio–text pair and still retrieves text from audio above chance (the bundled av-digits sample
manifest with class-structured feature folders written here: each modality its own codes)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_select import MANIFEST, labels, write_vectors

from polymodal.cli.main import main
from polymodal.core.errors import UsageError
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.fit import fit_retrieval
from polymodal.tasks.retrieval.predict import load_run

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    rng = np.random.default_rng(2)
    y = labels()
    vec = {m: rng.standard_normal((10, d))[y] + 0.8 * rng.standard_normal((len(y), d))
           for m, d in (("audio", 40), ("image", 48), ("text", 36))}
    return write_vectors(tmp_path_factory.mktemp("bind") / "f", vec)


def test_binding_never_trains_on_audio_text_and_beats_chance(feats, tmp_path):
    cfg = RetrievalConfig(manifest=str(MANIFEST), features=str(feats), query="audio",
                          target="text", pivot="image", pairs="audio-image,text-image",
                          relevance="label", hidden=64, dim=32, batch_size=32, index="exact",
                          train={"epochs": 15, "patience": 15, "progress": False})
    res = fit_retrieval(cfg, tmp_path / "run", progress=False)
    rec = json.loads((tmp_path / "run" / "binding.json").read_text())
    assert set(rec["pairs"]) == {"audio-image", "text-image"}  # no audio-text pair at all
    a, t = set(rec["pairs"]["audio-image"]), set(rec["pairs"]["text-image"])
    assert a and t and not a & t  # disjoint rows: no row lends its audio AND its text
    split = dict(line.split(",") for line in
                 (tmp_path / "run" / "splits.csv").read_text().splitlines()[1:])
    assert {split[i] for i in a | t} == {"train"}
    assert len(a | t) == sum(s == "train" for s in split.values())
    m = res["metrics"]["audio->text"]
    chance = res["baselines"]["chance"]["audio->text"]
    assert m["mAP"] > 2 * chance["mAP"] and m["R@1"] > 2 * chance["R@1"], (m, chance)
    run = load_run(tmp_path / "run")  # a normal audio -> text run: search / eval unchanged
    assert (run.config.query, run.config.target, run.config.loss) == ("audio", "text", "infonce")


def test_binding_pair_errors_are_one_line(feats, tmp_path, capsys):
    base = ["fit", "retrieval", "-q", "--manifest", str(MANIFEST), "--features", str(feats),
            "--query", "audio", "--target", "text", "--relevance", "label", "--no-report",
            "--out", str(tmp_path / "r")]
    for extra, msg in ((["--pivot", "image", "--pairs", "audio-text"], "includes the pivot"),
                       (["--pivot", "image", "--pairs", "audio-image"], "no pair aligns 'text'"),
                       (["--pairs", "audio-image,text-image"], "needs both --pivot"),
                       (["--pivot", "image", "--pairs", "audio-image,text-image", "--loss",
                         "cca"], "contrastive loss")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and msg in err and len(err.splitlines()) == 1, err
    with pytest.raises(UsageError, match="each pair is X-image"):
        fit_retrieval(RetrievalConfig(manifest=str(MANIFEST), features=str(feats),
                                      query="audio", target="text", pivot="image",
                                      pairs="audio"), tmp_path / "x", progress=False)
