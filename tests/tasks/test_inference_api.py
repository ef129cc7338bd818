"""The Python and CLI inference API on real small runs: ``polymodal.load(RUN)`` (classification
predictions from another working directory equal the run's own test predictions, whichever
modalities are given), ``polymodal predict`` (CSV, bad rows skipped and reported),
``polymodal search --queries`` (one batch, JSON lines), ``Encoder.encode`` (one item / a list,
batches, normalisation) and ``polymodal.encode`` (second call read from the feature cache)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import polymodal as pm
from polymodal.cli.main import main
from polymodal.core.errors import PolymodalError, UsageError
from polymodal.data.datasets import sample_path

ROWS = {"train": 40, "val": 10, "test": 12}


def _write_av_manifest(folder: Path) -> Path:
    """The first rows of each split of the bundled av-digits sample, files copied next to the
    manifest (relative paths). Of the 12 test rows, 4 lose their audio and 4 their image."""
    src = sample_path("av-digits")
    taken = dict.fromkeys(ROWS, 0)
    rows = []
    for line in src.read_text().splitlines():
        r = json.loads(line)
        if taken[r["split"]] >= ROWS[r["split"]]:
            continue
        if r["split"] == "test":
            drop = {0: None, 1: "audio", 2: "image"}[taken["test"] % 3]
            if drop:
                r[drop] = None
        taken[r["split"]] += 1
        for m in ("image", "audio"):
            if r[m]:
                (folder / Path(r[m]).parent).mkdir(parents=True, exist_ok=True)
                shutil.copy(src.parent / r[m], folder / r[m])
        rows.append({k: r[k] for k in ("id", "image", "audio", "text", "label", "split",
                                       "mnist_index")})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "manifest.jsonl"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path]:
    """``(A, B)``: an attention-fusion audio+image classifier fitted with relative paths from
    folder A (A/run), and an unrelated empty folder B."""
    from polymodal.tasks.classify.config import ClassifierConfig
    from polymodal.tasks.classify.fit import fit_classifier
    from polymodal.train.config import TrainConfig

    a, b = tmp_path_factory.mktemp("A"), tmp_path_factory.mktemp("B")
    _write_av_manifest(a / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(a)
        cfg = ClassifierConfig(manifest="data/manifest.jsonl", modalities=["audio", "image"],
                               fusion="attention", hidden=64, cache_dir="cache",
                               train=TrainConfig(epochs=20, patience=6, lr=3e-3, progress=False))
        fit_classifier(cfg, "run", progress=False)
    return a, b


def _test_rows(a: Path) -> list[dict]:
    """Test rows of A's manifest (absolute paths) with the run's own prediction."""
    with open(a / "run" / "predictions.csv") as fh:
        preds = {p["id"]: p for p in csv.DictReader(fh)}
    rows = []
    for r in map(json.loads, (a / "data" / "manifest.jsonl").read_text().splitlines()):
        if r["id"] in preds:
            item = {m: str(a / "data" / r[m]) for m in ("image", "audio") if r[m]}
            rows.append({"id": r["id"], "item": item, "pred": preds[r["id"]]})
    return rows


def test_load_predicts_like_the_fit_from_another_folder(fitted, monkeypatch):
    a, b = fitted
    monkeypatch.chdir(b)
    model = pm.load(a / "run")
    assert type(model).__name__ == "Classifier" and model.modalities == ["audio", "image"]
    rows = _test_rows(a)
    kinds = {"+".join(sorted(r["item"])) for r in rows}
    assert kinds == {"audio", "image", "audio+image"} and len(rows) == 12
    preds = model.predict([r["item"] for r in rows])  # one batch, mixed modalities
    for r, p in zip(rows, preds):
        assert r["pred"]["modalities"] == "+".join(p.modalities)
        assert str(p.prediction) == r["pred"]["prediction"], r["id"]
        assert max(p.probabilities.values()) == pytest.approx(float(r["pred"]["confidence"]),
                                                              abs=1e-3)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert sum(p.weights.values()) == pytest.approx(1.0, abs=1e-4)
        for m in ("audio", "image"):
            if m not in r["item"]:
                assert p.weights[m] == 0.0
    one = model.predict(rows[0]["item"])  # a single dict -> a single Prediction
    assert one.prediction == preds[0].prediction
    assert one.probabilities == pytest.approx(preds[0].probabilities, abs=1e-6)
    feats = model.embed([rows[0]["item"]["image"]] * 2, "image")
    assert feats.shape == (2, 1280) and feats.dtype == np.float32


def test_predict_input_errors(fitted):
    a, _ = fitted
    model = pm.load(a / "run")
    with pytest.raises(UsageError, match="this run uses audio, image; got text"):
        model.predict({"text": "seven"})
    with pytest.raises(UsageError, match="give at least one of: audio, image"):
        model.predict([{"image": None}])
    bad = a / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(PolymodalError, match="bad.png"):
        model.predict({"image": str(bad)})
    with pytest.raises(PolymodalError, match="not a classification run"):
        from polymodal.tasks.classify.predict import Classifier

        Classifier.load(a / "data")


def test_predict_cli_from_another_folder(fitted, monkeypatch, capsys):
    a, b = fitted
    monkeypatch.chdir(b)
    rows = _test_rows(a)[:3]
    (b / "bad.png").write_bytes(b"this is not an image")
    lines = [{"id": r["id"], **r["item"]} for r in rows]
    lines += [{"id": "broken", "image": "bad.png"}, {"id": "words", "text": "seven"}]
    Path("new.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["predict", str(a / "run"), "--manifest", "new.jsonl", "--out", "preds.csv",
                 "-q"]) == 0
    out = capsys.readouterr().out
    assert "predicted: 3 rows" in out and "skipped: 2" in out
    assert "row 4  image: bad.png: not an image: the file contains text" in out  # reported the way `polymodal encode` does
    with open(b / "preds.csv") as fh:
        got = list(csv.reader(fh))
    labels = pm.load(a / "run").labels
    assert got[0] == ["id", "prediction"] + [f"p_{lab}" for lab in labels]
    assert [g[0] for g in got[1:]] == [r["id"] for r in rows]
    for g, r in zip(got[1:], rows):
        assert g[1] == r["pred"]["prediction"]
        assert max(map(float, g[2:])) == pytest.approx(float(r["pred"]["confidence"]), abs=1e-3)
    skipped = [json.loads(x) for x in (b / "preds.skipped.jsonl").read_text().splitlines()]
    assert [s["row"] for s in skipped] == [4, 5]
    assert "none of this run's modalities" in skipped[1]["reason"]
    assert main(["predict", str(a / "run"), "--manifest", "nope.jsonl", "--out", "x.csv"]) == 2
    assert "not found" in capsys.readouterr().err


def test_predict_cli_regression_writes_a_score_column(fitted, monkeypatch, capsys):
    from polymodal.tasks.classify.config import ClassifierConfig
    from polymodal.tasks.classify.fit import fit_classifier
    from polymodal.train.config import TrainConfig

    a, b = fitted
    monkeypatch.chdir(a)
    cfg = ClassifierConfig(manifest="data/manifest.jsonl", modalities=["audio", "image"],
                           target="mnist_index", task="regression", fusion="late", hidden=32,
                           cache_dir="cache", train=TrainConfig(epochs=3, progress=False))
    fit_classifier(cfg, "reg", progress=False)
    monkeypatch.chdir(b)
    assert main(["predict", str(a / "reg"), "--manifest", str(a / "data" / "manifest.jsonl"),
                 "--out", "out/reg.csv", "-q"]) == 0
    assert "predicted: 62 rows" in capsys.readouterr().out
    with open(b / "out" / "reg.csv") as fh:
        got = {r["id"]: r for r in csv.DictReader(fh)}
    assert list(next(iter(got.values()))) == ["id", "score"]
    with open(a / "reg" / "predictions.csv") as fh:
        test = list(csv.DictReader(fh))
    assert len(test) == 12
    for r in test:
        assert float(got[r["id"]]["score"]) == pytest.approx(float(r["prediction"]), rel=1e-3)
    assert (b / "out" / "reg.skipped.jsonl").read_text() == ""


def test_prediction_rows_of_multilabel_runs():
    from polymodal.tasks.classify.predict import Prediction, prediction_rows

    preds = [Prediction(["cat", "dog"], {"cat": 0.9, "dog": 0.7, "owl": 0.1}, None, ["text"]),
             Prediction([], {"cat": 0.2, "dog": 0.4, "owl": 0.3}, None, ["image"])]
    head, rows = prediction_rows("multilabel", ["cat", "dog", "owl"], ["a", "b"], preds)
    assert head == ["id", "prediction", "p_cat", "p_dog", "p_owl"]
    assert rows == [["a", "cat|dog", "0.900000", "0.700000", "0.100000"],
                    ["b", "", "0.200000", "0.400000", "0.300000"]]


@pytest.fixture(scope="module")
def small_run(serve_testdata, tmp_path_factory) -> Path:
    return serve_testdata.ensure_small_run(tmp_path_factory.getbasetemp())


QUERIES = ["a red apple", "a cat", "a guitar"]


def test_search_queries_cli_from_another_folder(small_run, tmp_path, monkeypatch, capsys):
    from polymodal.tasks.retrieval.predict import load_run, search_run

    monkeypatch.chdir(tmp_path)
    Path("q.txt").write_text("\n".join(QUERIES[:2]) + "\n\n" + QUERIES[2] + "\n")
    assert main(["search", str(small_run), "--queries", "q.txt", "-k", "4", "--json"]) == 0
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    run = load_run(small_run)
    assert [g["query"] for g in got] == QUERIES
    for g in got:
        single = search_run(run, text=g["query"], k=4)
        assert [h["row_id"] for h in g["hits"]] == [h.row_id for h in single]
        assert [h["score"] for h in g["hits"]] == pytest.approx([h.score for h in single],
                                                                abs=1e-4)
    assert main(["search", str(small_run), "--queries", "q.txt", "-k", "2"]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert plain[0] == "query 1: a red apple" and plain[3] == "query 2: a cat"
    assert len(plain) == 9
    assert main(["search", str(small_run), "--queries", "none.txt"]) == 2
    assert "queries file not found" in capsys.readouterr().err


def test_retriever_object(small_run):
    from polymodal.tasks.retrieval.predict import eval_run

    model = pm.load(small_run)
    assert type(model).__name__ == "Retriever"
    hits = model.search(QUERIES, k=3)
    assert len(hits) == 3 and all(len(h) == 3 for h in hits)
    assert [h.row_id for h in model.search("a cat", k=3)] == [h.row_id for h in hits[1]]
    vec = model.embed(QUERIES, "text")
    assert vec.shape == (3, 64) and model.embed("a cat").shape == (64,)
    np.testing.assert_allclose(model.embed("a cat"), vec[1], atol=1e-5)
    image = str(model.run.manifest.records[0].image)
    assert model.search(image, k=1, modality="image")[0].row_id == \
        model.run.manifest.records[0].id
    assert model.evaluate() == eval_run(model.run, progress=False)
    with pytest.raises(UsageError, match="index size"):
        model.search("a cat", k=0)


def test_encoder_encode_one_or_many():
    from polymodal.features.encoders import build_encoder

    minilm = build_encoder("minilm")
    one, many = minilm.encode("a cat"), minilm.encode(["a cat", "a dog", "a car"])
    assert tuple(one.shape) == (384,) and tuple(many.shape) == (3, 384)
    np.testing.assert_allclose(one.numpy(), many[0].numpy(), atol=1e-5)
    arr = minilm.encode(["a cat", "a dog"], numpy=True)
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32
    logmel = build_encoder("logmel")
    wavs = sorted((sample_path("av-digits").parent / "audio").glob("*.wav"))[:5]
    raw = logmel.encode([str(w) for w in wavs], numpy=True)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    unit = logmel.encode([str(w) for w in wavs], batch_size=2, normalize=True, numpy=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True),
                               atol=1e-5)
    assert logmel.encode(wavs[0]).shape == (logmel.dim,)


def test_polymodal_encode_reads_the_cache(tmp_path, monkeypatch):
    from polymodal.features.encoders import build_encoder

    enc = build_encoder("minilm")
    calls = []
    real = enc.encode_prepared
    monkeypatch.setattr(enc, "encode_prepared", lambda b: calls.append(len(b)) or real(b))
    texts = ["a cat", "a red car", "a cat"]
    first = pm.encode(texts, encoder=enc, cache_dir=tmp_path)
    assert first.shape == (3, 384) and first.dtype == np.float32 and sum(calls) == 2
    second = pm.encode(texts, encoder=enc, cache_dir=tmp_path)
    assert sum(calls) == 2  # nothing encoded again
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, enc.encode(texts, numpy=True), atol=2e-3)
    np.testing.assert_array_equal(pm.encode("a red car", encoder=enc, cache_dir=tmp_path),
                                  first[1])
    with pytest.raises(UsageError, match="non-empty strings"):
        pm.encode(["ok", " "], encoder=enc, cache_dir=tmp_path)
    with pytest.raises(PolymodalError, match="not found"):
        pm.encode(str(tmp_path / "none.png"), encoder="efficientnet-lite0", cache_dir=tmp_path)


def test_load_generation_run_from_another_folder(tmp_path, monkeypatch):
    from polymodal.tasks.generate.config import GenerateConfig
    from polymodal.tasks.generate.fit import fit_generate
    from polymodal.tasks.generate.predict import generate_images, load_generator
    from polymodal.train.config import TrainConfig

    cfg = GenerateConfig(manifest=str(sample_path("av-digits")), model="cvae", limit=64,
                         metrics="none", train=TrainConfig(epochs=1, progress=False))
    fit_generate(cfg, tmp_path / "gen", progress=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    model = pm.load(tmp_path / "gen")
    assert type(model).__name__ == "ImageGenerator" and model.condition == "text"
    imgs = model.generate(text="seven", n=4, seed=1)
    assert imgs.shape[0] == 4 and imgs.shape[-2:] == (28, 28)
    assert imgs.min() >= 0.0 and imgs.max() <= 1.0
    np.testing.assert_array_equal(imgs, generate_images(load_generator(tmp_path / "gen"),
                                                        text="seven", n=4, seed=1))
    with pytest.raises(UsageError, match="conditioned on text"):
        model.generate(audio="x.wav")
