"""Modality importance (permutation, ablation, exact Shapley), robustness sweeps and `explain`,
on classifiers trained on the tiny real audio-visual digits set (tests/tasks)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks"))
from test_classification import build_avdigits_tiny, make_config  # noqa: E402

from polymodal.cli.main import main  # noqa: E402
from polymodal.core.errors import UsageError  # noqa: E402
from polymodal.metrics.importance import (ablation_importance, coalition_mask,  # noqa: E402
                                       permutation_importance, shapley_from_values,
                                       shapley_values)
from polymodal.metrics.robustness import (add_noise, mask_missing, parse_levels,  # noqa: E402
                                       robustness_sweep)
from polymodal.tasks.classify.analysis import explain_dataset, explain_row  # noqa: E402
from polymodal.tasks.classify.fit import fit_classifier  # noqa: E402
from polymodal.tasks.classify.loaded import load_classifier  # noqa: E402


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory) -> dict[str, Path]:
    avd = build_avdigits_tiny(shared_data, tmp_path_factory.getbasetemp() / "avdigits-tiny")
    out = tmp_path_factory.mktemp("imp")
    for name in ("early", "attention"):
        fit_classifier(make_config(avd, name, modality_dropout=0.3), out / name, progress=False)
    return {"early": out / "early", "attention": out / "attention"}


@pytest.fixture(scope="module")
def test_split(runs):
    clf = load_classifier(runs["early"])
    data = clf.data().select("test")

    def evaluate(x, mask):
        return clf.score(data.y, clf.outputs(x, mask))["accuracy"]
    return clf, data, evaluate


def test_shapley_of_a_known_game():
    # v(S) = sum of weights + 1 bonus when players 0 and 1 are both in: the bonus splits evenly
    w = [0.5, 0.2, 0.1]
    vals = {}
    for s in range(8):
        members = frozenset(i for i in range(3) if s >> i & 1)
        vals[members] = sum(w[i] for i in members) + (1.0 if {0, 1} <= members else 0.0)
    assert shapley_from_values(vals, 3) == pytest.approx([1.0, 0.7, 0.1])


def test_dataset_shapley_ablation_permutation(test_split):
    clf, data, evaluate = test_split
    mods = clf.modalities  # ["audio", "image"]
    base = evaluate(data.x, data.mask)
    shap = shapley_values(evaluate, data.x, data.mask, mods)
    assert shap["v_all"] == pytest.approx(base)
    assert sum(shap["values"].values()) == pytest.approx(shap["v_all"] - shap["v_none"])
    assert shap["v_none"] < 0.2  # nothing present: one constant answer, about chance
    abl = ablation_importance(evaluate, data.x, data.mask, mods)
    only_image = evaluate(data.x, coalition_mask(data.mask, [mods.index("image")]))
    assert abl["audio"] == pytest.approx(base - only_image)
    # audio is the informative modality of this set (image pixels are pooled and noisy)
    assert abl["audio"] > abl["image"] + 0.05 and abl["audio"] > 0.1
    assert shap["values"]["audio"] > shap["values"]["image"] > 0
    perm = permutation_importance(evaluate, data.x, data.mask, mods, repeats=2)
    assert perm["audio"]["mean"] > perm["image"]["mean"] and perm["audio"]["mean"] > 0.1


def test_robustness_sweep_matches_ablation(test_split):
    clf, data, evaluate = test_split
    rows = robustness_sweep(evaluate, data.x, data.mask, clf.modalities,
                            missing={"audio": [0, 0.5, 1]}, noise={"image": [30, -20]})
    v = {(r["kind"], r["level"]): r["value"] for r in rows}
    base = evaluate(data.x, data.mask)
    only_image = evaluate(data.x, coalition_mask(data.mask, [clf.modalities.index("image")]))
    assert v[("missing", 0.0)] == pytest.approx(base)
    assert v[("missing", 1.0)] == pytest.approx(only_image)
    assert v[("missing", 0.0)] > v[("missing", 0.5)] > v[("missing", 1.0)]
    assert v[("noise", 30.0)] > v[("noise", -20.0)]
    with pytest.raises(UsageError, match="unknown modality 'text'"):
        robustness_sweep(evaluate, data.x, data.mask, clf.modalities, missing={"text": [1]})


def test_mask_missing_and_noise_levels():
    mask = np.ones((200, 2), bool)
    mask[:40, 1] = False
    out = mask_missing(mask, 1, 0.25, seed=3)
    assert out[:, 1].sum() == 160 - 40 and (out[:, 0] == mask[:, 0]).all()
    assert (out == mask_missing(mask, 1, 0.25, seed=3)).all()
    assert not (out == mask_missing(mask, 1, 0.25, seed=4)).all()
    x = np.random.default_rng(0).normal(2.0, 1.0, (5000, 16)).astype(np.float32)
    for snr in (20.0, 0.0, -10.0):
        noisy = add_noise(x, snr, seed=1)
        measured = 10 * np.log10(np.mean(x.var(0)) / np.mean((noisy - x) ** 2))
        assert measured == pytest.approx(snr, abs=0.1)
    assert parse_levels(["audio:0,0.5", "audio:1"], "missing") == {"audio": [0.0, 0.5, 1.0]}
    assert parse_levels(["image:snr=20,-5"], "noise") == {"image": [20.0, -5.0]}
    for bad in (["audio"], ["audio:x"], ["audio:1.5"]):
        with pytest.raises(UsageError):
            parse_levels(bad, "missing")


def test_explain_row_shapley_adds_up(runs, test_split):
    clf, data, _ = test_split
    no_audio = data.ids[int(np.flatnonzero(~data.mask[:, 0])[0])]
    both = data.ids[int(np.flatnonzero(data.mask.all(1))[0])]
    for rid in (both, no_audio):
        res = explain_row(runs["early"], rid)
        total = sum(res["shapley"].values())
        assert total == pytest.approx(res["v_all"] - res["v_none"], abs=1e-6)
        assert res["truth"] == clf.labels[int(data.y[data.ids.index(rid)])]
        assert res["split"] == "test"
    assert res["present"] == ["image"] and res["shapley"]["audio"] == 0.0
    assert "attention" not in res  # early fusion has no attention weights


def test_explain_cli_and_attention_weights(runs, test_split, capsys):
    _, data, _ = test_split
    run = runs["attention"]
    assert main(["explain", str(run), "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "permutation" in out and "attention" in out and "Shapley: v(none)" in out
    imp = json.loads((run / "importance.json").read_text())
    s = imp["shapley"]
    assert sum(s["values"].values()) == pytest.approx(s["v_all"] - s["v_none"])
    assert (run / "importance.png").stat().st_size > 5000
    rid = data.ids[int(np.flatnonzero(data.mask.all(1))[0])]
    res = explain_dataset(run, write=False, repeats=1)
    assert set(res["mean_attention"]) == {"audio", "image"}
    assert main(["explain", str(run), "--row", rid]) == 0
    out = capsys.readouterr().out
    assert f"row {rid}" in out and "Shapley contributions" in out and "attention weights" in out
    w = explain_row(run, rid)["attention"]
    assert sum(w.values()) == pytest.approx(1.0, abs=1e-5)
    out_dir = run.parent / "rob-attention"
    assert main(["robustness", str(run), "--missing", "audio:0,1", "--out", str(out_dir),
                 "-q"]) == 0
    lines = (out_dir / "robustness.csv").read_text().splitlines()
    assert len(lines) == 3 and all(x.startswith("attention,missing,audio,") for x in lines[1:])
    capsys.readouterr()
    assert main(["explain", str(run), "--row", "no-such-row"]) == 2
    assert "unknown row id 'no-such-row'" in capsys.readouterr().err
