"""The retrieval-augmented caption decoder (`--decoder rag`) on real drawings: 70 OpenClipart
drawings of the bundled sample (50 train, 20 test; val = 10 renamed copies of train drawings)
plus 5 training "twins" (the same image filed under another folder, as in the real collection). Neighbours must come from the
train split only, never the image itself nor its same-named twin; the run must save its
neighbour index, reload, and `polymodal caption` must give the caption the fit wrote for the
same test image; copy ids must round-trip words outside the vocabulary."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polymodal.cli.main import main
from polymodal.core.errors import UsageError
from polymodal.data.datasets import sample_path
from polymodal.features.cache.features import FeatureSet
from polymodal.tasks.caption.config import CaptionConfig
from polymodal.tasks.caption.fit import fit_caption
from polymodal.tasks.caption.predict import load_captioner
from polymodal.tasks.caption.rag import (NeighbourIndex, _name, ext_text, neighbour_inputs,
                                        rag_candidates, target_ids)
from polymodal.train.config import TrainConfig

N_TRAIN, N_VAL, N_TEST, N_TWIN = 50, 10, 20, 5


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    src = sample_path("openclipart")
    rows = [json.loads(line) for line in src.read_text().splitlines()][:N_TRAIN + N_VAL + N_TEST]
    d = tmp_path_factory.mktemp("rag")
    for i, r in enumerate(rows):
        r["image"] = str((src.parent / r["image"]).resolve())
        r["split"] = "train" if i < N_TRAIN else "test"
    twins = [{**r, "id": "twins/" + _name(r["id"])} for r in rows[:N_TWIN]]
    # validation = copies of training drawings under other names: the kept epoch is then one
    # that learned to copy its nearest neighbour's caption (50 captions teach little else)
    val = [{**r, "id": f"{r['id']}-val", "split": "val"} for r in rows[N_TWIN:N_TWIN + N_VAL]]
    rows = rows[:N_TRAIN] + rows[N_TRAIN + N_VAL:]
    man = d / "manifest.jsonl"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows + val + twins))
    cfg = CaptionConfig(manifest=str(man), decoder="rag", embed_dim=64, layers=1, heads=2,
                        neighbours=3, dropout=0.0, min_count=2, batch_size=32, beam=2, rerank=True,
                        train=TrainConfig(epochs=30, lr=3e-3, patience=30, progress=False))
    out = d / "run"
    return out, rows, twins, fit_caption(cfg, out, progress=False)


def _train_features(out, rows, twins):
    fs = FeatureSet.load(out / "features")
    x, _ = fs.per_row("image")
    ids = [r["id"] for r in rows] + [t["id"] for t in twins]
    return x, ids


def test_train_neighbours_leave_out_the_image_and_its_twins(run):
    out, rows, twins, _ = run
    index = NeighbourIndex.load(out)
    assert len(index.ids) == N_TRAIN + N_TWIN
    x, ids = _train_features(out, rows, twins)
    train = [i for i, r in enumerate(ids) if r in set(index.ids)]
    q_ids = [ids[i] for i in train]
    idx, sims = index.search(x[train], 3, q_ids)
    for qid, nb in zip(q_ids, idx):
        assert all(_name(index.ids[j]) != _name(qid) for j in nb), qid
    # without the leave-out, a twinned image finds itself or its twin first (cosine ~1):
    # the check above is not vacuous
    raw, raw_sims = index.search(x[train[:N_TWIN]], 1)
    assert all(_name(index.ids[j[0]]) == _name(q) for j, q in zip(raw, q_ids[:N_TWIN]))
    assert raw_sims[:, 0].min() > 0.99 and sims[:N_TWIN, 0].max() < 0.99


def test_test_neighbours_come_from_train_only(run):
    out, rows, twins, _ = run
    index = NeighbourIndex.load(out)
    train_ids = {r["id"] for r in rows if r["split"] == "train"} | {t["id"] for t in twins}
    assert set(index.ids) == train_ids
    train_caps = {t for r in rows[:N_TRAIN] for t in r["text"]}
    assert set(index.captions) <= train_caps


def test_rag_run_scores_every_method(run):
    out, _, _, res = run
    assert set(res["metrics"]) == {"greedy", "beam2", "beam2+consensus", "nearest-neighbour",
                                   "nn-consensus"}
    for m in res["metrics"].values():
        assert 0 <= m["BLEU-4"] <= 100 and 0 <= m["ROUGE-L"] <= 1 and m["CIDEr-D"] >= 0
    assert set(res["rerank"]) == {"lp_weight", "temperature", "length_power"}
    assert (out / "neighbours.safetensors").is_file() and (out / "neighbours.json").is_file()


def test_caption_cli_on_rag_run_matches_the_fit(run, capsys):
    out, rows, _, _ = run
    samples = {s["id"]: s for s in map(json.loads, (out / "samples.jsonl").read_text()
                                       .splitlines())}
    picks = rows[N_TRAIN:N_TRAIN + 3]
    assert main(["caption", str(out), *[r["image"] for r in picks], "-q"]) == 0
    lines = capsys.readouterr().out.rstrip("\n").split("\n")
    assert len(lines) == 3
    for line, r in zip(lines, picks):
        path, cap = line.split("\t", 1)
        assert path == r["image"] and cap == samples[r["id"]]["beam"]
    assert any(s["beam"] for s in samples.values())  # not all empty


def test_copy_ids_round_trip_words_outside_the_vocabulary(run):
    out, rows, twins, _ = run
    cap = load_captioner(out)
    vi = {w: i for i, w in enumerate(cap.vocab)}
    index = cap.index
    x, ids = _train_features(out, rows, twins)
    idx, sims = index.search(x[:N_TRAIN], 3, ids[:N_TRAIN])
    nb = neighbour_inputs(index, idx, sims, vi, 16)
    r = next(i for i, o in enumerate(nb.oov) if o)  # a row whose neighbours have an OOV word
    word = nb.oov[r][0]
    assert word not in vi
    t = target_ids(f"the {word}", vi, nb.oov[r], 16)
    assert t[-2] == len(cap.vocab) and ext_text(t[1:-1], cap.vocab, nb.oov[r]).endswith(word)
    assert UNK_ID == target_ids("zzzqqq", vi, nb.oov[r], 16)[1]
    # decoding never emits an extended id the row does not have, nor repeats a word (n=1)
    got = rag_candidates(cap.model, x[:N_TRAIN], nb, cap.vocab, 2, 16, no_repeat_ngram=1)
    for row, oov in zip(got, nb.oov):
        for text, lp, n in row:
            words = text.split()
            assert len(words) == len(set(words)) and np.isfinite(lp)
            assert all(w in vi or w in oov for w in words)


UNK_ID = 3


def test_rag_rejects_more_neighbours_than_training_images(tmp_path):
    index = NeighbourIndex.build(np.eye(3, 4), ["a", "b", "c"], ["x/a", "x/b", "x/c"])
    with pytest.raises(Exception, match="--neighbours 3: only 3 training images"):
        index.search(np.eye(1, 4), 3, ["x/a"])
    i, s = index.search(torch.eye(1, 4).numpy(), 3)
    assert i[0, 0] == 0 and s[0, 0] == pytest.approx(1.0, abs=1e-3)


def test_too_few_training_images_for_the_neighbours_fail_before_encoding(tmp_path):
    src = sample_path("openclipart")
    rows = [json.loads(line) for line in src.read_text().splitlines()][:6]
    for i, r in enumerate(rows):
        r["image"] = str((src.parent / r["image"]).resolve())
        r["split"] = "train" if i < 4 else "test"
    man = tmp_path / "manifest.jsonl"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = CaptionConfig(manifest=str(man), decoder="rag", neighbours=4,
                        train=TrainConfig(epochs=1, progress=False))
    with pytest.raises(UsageError, match=r"train rows with an image and a caption, for --neighbours 4 \(need 5"):
        fit_caption(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "features").exists()  # refused before any image was encoded
