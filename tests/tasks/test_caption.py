"""Image -> caption on real drawings: 60 OpenClipart drawings of the bundled sample (50 train,
10 test), EfficientNet-Lite0 features. The decoder must be able to memorise its 50 training
drawings' captions (a decoder that cannot overfit this cannot learn anything), the run writes
its metrics for greedy, beam and the nearest-neighbour baseline, and `polymodal caption`
captions a file or fails with one line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from polymodal.features.cache.features import FeatureSet
from polymodal.cli.main import main
from polymodal.data.datasets import sample_path
from polymodal.metrics.textgen import normalize_caption
from polymodal.tasks.caption.config import CaptionConfig
from polymodal.tasks.caption.fit import fit_caption, nearest_neighbour_captions
from polymodal.tasks.caption.predict import decode, load_captioner
from polymodal.train.config import TrainConfig

N_TRAIN, N_TEST = 50, 10


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    src = sample_path("openclipart")
    rows = [json.loads(line) for line in src.read_text().splitlines()][:N_TRAIN + N_TEST]
    d = tmp_path_factory.mktemp("cap")
    for i, r in enumerate(rows):
        r["image"] = str((src.parent / r["image"]).resolve())
        r["split"] = "train" if i < N_TRAIN else "test"
    # validation = copies of 20 training rows: this test is about memorising the training
    # captions, so the kept (best-validation) epoch must be the one that memorises best
    val = [{**r, "id": f"{r['id']}-val", "split": "val"} for r in rows[:20]]
    man = d / "manifest.jsonl"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows + val))
    cfg = CaptionConfig(manifest=str(man), decoder="gru", embed_dim=64, hidden=256, dropout=0.0,
                        min_count=1, batch_size=64, beam=2,
                        train=TrainConfig(epochs=40, lr=3e-3, patience=40, progress=False))
    out = d / "run"
    return out, rows, fit_caption(cfg, out, progress=False)


def test_decoder_memorises_training_captions(run):
    out, rows, _ = run
    cap = load_captioner(out)
    x, _ = FeatureSet.load(out / "features").per_row("image")
    got = decode(cap.model, x[:N_TRAIN], cap.vocab, beam=1, max_len=16)
    refs = [{normalize_caption(t) for t in r["text"]} for r in rows[:N_TRAIN]]
    hits = np.mean([g in r for g, r in zip(got, refs)])
    assert hits >= 0.8, f"only {hits:.2f} of the training captions reproduced"


def test_run_writes_metrics_for_decoder_and_baseline(run):
    out, rows, res = run
    assert set(res["metrics"]) == {"greedy", "beam2", "nearest-neighbour"}
    for m in res["metrics"].values():
        assert set(m) >= {"BLEU-1", "BLEU-4", "CIDEr-D", "ROUGE-L"}
        assert 0 <= m["BLEU-4"] <= 100 and 0 <= m["ROUGE-L"] <= 1
    assert res["n_test_images"] == N_TEST and res["n_train_captions"] >= N_TRAIN
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == N_TEST
    assert all(s["nearest_neighbour"] in sum((r["text"] for r in rows[:N_TRAIN]), [])
               for s in samples)
    assert json.loads((out / "metrics.json").read_text())["metrics"] == res["metrics"]
    assert (out / "vocab.json").is_file() and (out / "model.safetensors").is_file()


def test_nearest_neighbour_is_the_most_similar_training_item():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    caps = nearest_neighbour_captions(train, ["a", "b", "c"], np.array([[0.1, 2.0], [3, 2.9]]))
    assert caps == ["b", "c"]


def test_caption_cli(run, capsys):
    out, rows, _ = run
    img = rows[0]["image"]
    assert main(["caption", str(out), img, "-q"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(img + "\t") and len(line) > len(img) + 1


def test_caption_cli_errors(run, tmp_path, capsys):
    out, _, _ = run
    assert main(["caption", str(tmp_path / "missing"), "x.png"]) == 2
    assert "run folder not found" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert main(["caption", str(out), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "bad.png" in err and len(err.strip().splitlines()) == 1
