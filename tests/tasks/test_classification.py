"""Multimodal prediction on real data: a tiny audio-visual digits set built from MNIST pixels
(4x4-pooled, with pixel noise) and FSDD recordings (coarse log spectra), split by speaker, written
directly as an encoded feature folder + manifest. `build_avdigits_tiny` is shared with the
compare / robustness / importance tests."""
from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from polymodal.core.errors import DataError, PolymodalError, UsageError
from polymodal.tasks.classify.config import ClassifierConfig
from polymodal.tasks.classify.fit import fit_classifier
from polymodal.tasks.classify.loaded import load_classifier, predict
from polymodal.train.config import TrainConfig

N_IMAGES = 2400
PIXEL_NOISE = 0.35
TEST_SPEAKER, VAL_SPEAKER = "theo", "george"
FAST = TrainConfig(epochs=40, patience=8, lr=5e-3, progress=False)


def _idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def _audio_feature(path: Path, nfft: int = 256, segments: int = 3, bands: int = 24
                   ) -> tuple[np.ndarray, float]:
    """Mean log power in log-spaced bands for each third of the recording, and its RMS in dB."""
    import soundfile as sf

    x, _ = sf.read(str(path), dtype="float32")
    x = x.mean(axis=1) if x.ndim > 1 else x
    rms_db = float(20 * np.log10(np.sqrt(np.mean(x ** 2)) + 1e-8))
    x = x / (np.abs(x).max() + 1e-8)
    if len(x) < nfft * segments:
        x = np.pad(x, (0, nfft * segments - len(x)))
    frames = x[: len(x) // nfft * nfft].reshape(-1, nfft) * np.hanning(nfft)
    spec = np.log(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-6)
    edges = np.unique(np.geomspace(1, spec.shape[1], bands + 1).astype(int))
    banded = np.stack([spec[:, a:b].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], 1)
    return np.concatenate([s.mean(0) for s in np.array_split(banded, segments, 0)]), rms_db


def _write_modality(root: Path, name: str, vecs: np.ndarray, rows: np.ndarray) -> dict:
    np.save(root / f"{name}.npy", vecs.astype(np.float16))
    np.save(root / f"{name}_rows.npy", rows.astype(np.int64))
    return {"encoder": f"test-{name}", "name": f"test-{name}", "dim": int(vecs.shape[1]),
            "count": int(len(rows))}


def build_avdigits_tiny(shared: Path, root: Path) -> Path:
    """Write ``root/manifest.jsonl`` + ``root/features/`` (once; reused when present).

    Row i pairs MNIST test image i with a random FSDD recording (index < 25) of the same digit;
    its split is the recording's speaker's (test: theo, val: george, train: the other four).
    About 8 % of rows lack audio and 5 % lack the image; rows 3 and 4 lack both. Extra columns:
    ``parity`` (even/odd), ``tags`` (a list: even/odd, small/big, prime), ``rms_db`` (the
    recording's loudness), ``ink`` (the image's mean intensity, a real regression target) and
    ``note`` (text)."""
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        return manifest
    rng = np.random.default_rng(0)
    images = _idx(shared / "mnist/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)[:N_IMAGES]
    labels = _idx(shared / "mnist/t10k-labels-idx1-ubyte.gz", 8)[:N_IMAGES].astype(int)
    pooled = images.reshape(-1, 7, 4, 7, 4).astype(np.float32).mean((2, 4)) / 255
    img = pooled.reshape(len(images), 49) + PIXEL_NOISE * rng.standard_normal((len(images), 49))
    files = sorted(p for p in (shared / "fsdd/recordings").glob("*.wav")
                   if int(p.stem.split("_")[2]) < 25)
    feats = [_audio_feature(p) for p in files]
    aud = np.stack([f for f, _ in feats])
    rms = np.array([r for _, r in feats])
    digit = np.array([int(p.stem.split("_")[0]) for p in files])
    speaker = [p.stem.split("_")[1] for p in files]
    pick = np.array([rng.choice(np.flatnonzero(digit == d)) for d in labels])
    split = {TEST_SPEAKER: "test", VAL_SPEAKER: "val"}
    u = rng.random(N_IMAGES)
    has_audio, has_image = ~((u < 0.08) & (np.arange(N_IMAGES) > 4)), ~(u > 0.95)
    has_audio[[3, 4]] = has_image[[3, 4]] = False
    rows = []
    for i, d in enumerate(labels):
        j = pick[i]
        tags = ["even" if d % 2 == 0 else "odd", "small" if d < 5 else "big"]
        rows.append({"id": f"av{i:04d}", "image": f"images/{i:04d}.png", "audio": str(files[j]),
                     "label": int(d), "split": split.get(speaker[j], "train"),
                     "speaker": speaker[j], "parity": tags[0],
                     "tags": tags + (["prime"] if d in (2, 3, 5, 7) else []),
                     "rms_db": round(float(rms[j]), 3), "note": "ok",
                     "ink": round(float(images[i].mean() / 255), 4)})
    feat = root / "features"
    feat.mkdir(parents=True)
    mods = {"image": _write_modality(feat, "image", img[has_image], np.flatnonzero(has_image)),
            "audio": _write_modality(feat, "audio", aud[pick][has_audio],
                                     np.flatnonzero(has_audio))}
    (feat / "ids.json").write_text(json.dumps([r["id"] for r in rows]))
    (feat / "features.json").write_text(json.dumps({"manifest": str(manifest),
                                                    "n_rows": len(rows), "modalities": mods}))
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def make_config(manifest: Path, fusion: str, **kw) -> ClassifierConfig:
    """A fast config over the tiny set's image + audio features."""
    kw.setdefault("train", FAST)
    return ClassifierConfig(manifest=str(manifest), features=str(manifest.parent / "features"),
                            modalities=["image", "audio"], fusion=fusion, hidden=64, **kw)


@pytest.fixture(scope="module")
def avd(shared_data, tmp_path_factory) -> Path:
    return build_avdigits_tiny(shared_data, tmp_path_factory.getbasetemp() / "avdigits-tiny")


@pytest.fixture(scope="module")
def runs(avd, tmp_path_factory):
    out = tmp_path_factory.mktemp("cls")
    res = {}
    for name, fusion, p in (("early", "early", 0.3), ("image", "unimodal:image", 0.0),
                            ("audio", "unimodal:audio", 0.0)):
        res[name] = (out / name, fit_classifier(make_config(avd, fusion, modality_dropout=p),
                                                out / name, progress=False))
    return res


def test_fusion_beats_worst_unimodal_and_writes_run(runs):
    acc = {k: r["metrics"]["accuracy"] for k, (_, r) in runs.items()}
    print(acc)
    assert acc["early"] > min(acc["image"], acc["audio"]) + 0.03, acc
    assert min(acc.values()) > 0.3  # every model is far above chance (0.1) on unseen speakers
    run, res = runs["early"]
    for f in ("model.safetensors", "config.yaml", "metrics.json", "predictions.csv",
              "skipped.jsonl", "train_log.csv"):
        assert (run / f).is_file(), f
    m = res["metrics"]
    assert set(m) == {"accuracy", "macro_f1", "auroc"} and m["auroc"] > 0.8
    assert res["params"] > 0 and res["train_seconds"] > 0 and res["peak_mem_mb"] >= 0
    assert res["n_test"] > 200 and res["n_train"] > 1000
    assert json.loads((run / "metrics.json").read_text())["metrics"] == m


def test_rows_without_modalities_are_reported_and_skipped(runs):
    run, res = runs["early"]
    skipped = [json.loads(x) for x in (run / "skipped.jsonl").read_text().splitlines()]
    assert [s["row"] for s in skipped] == [4, 5] and res["skipped_rows"] == 2
    assert "all modalities missing" in skipped[0]["reason"]


def test_predictions_reload_and_match(runs, avd):
    from polymodal.features.cache.features import FeatureSet

    run, res = runs["early"]
    with open(run / "predictions.csv") as fh:
        saved = {r["id"]: r for r in csv.DictReader(fh)}
    clf = load_classifier(run)
    assert clf.labels == list(range(10)) and clf.modalities == ["audio", "image"]
    fs = FeatureSet.load(avd.parent / "features")
    out = predict(clf, fs)
    pos = {rid: i for i, rid in enumerate(fs.ids)}
    agree = [str(out["prediction"][pos[rid]]) == r["prediction"] for rid, r in saved.items()]
    assert all(agree) and len(agree) == res["n_test"]
    correct = np.mean([r["prediction"] == r["target"] for r in saved.values()])
    assert correct == pytest.approx(res["metrics"]["accuracy"])
    # the mask is honoured: hiding audio changes some predictions, never touches audio features
    x = {m: fs.per_row(m)[0] for m in ("image", "audio")}
    full = predict(clf, x)["proba"]
    no_audio = predict(clf, {"image": x["image"], "audio": x["audio"] * 0 + 1e6},
                       mask=np.stack([np.zeros(len(fs.ids), bool), np.ones(len(fs.ids), bool)], 1))
    only_image = predict(clf, {"image": x["image"]})["proba"]
    np.testing.assert_allclose(no_audio["proba"], only_image, atol=1e-6)
    assert np.abs(full - only_image).max() > 0.1


def test_unimodal_rows_missing_their_modality_get_the_prior(runs, avd):
    run, _ = runs["audio"]
    with open(run / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    image_only = [r for r in rows if r["modalities"] == "image"]
    assert image_only, "the test split should have rows without audio"
    assert len({(r["prediction"], r["confidence"]) for r in image_only}) == 1


def test_regression_and_multilabel_targets(avd, tmp_path):
    reg = fit_classifier(make_config(avd, "early", target="ink"), tmp_path / "r",
                         progress=False)
    assert reg["problem"] == "regression"  # auto-detected: many distinct numbers
    assert reg["metrics"]["r2"] > 0.3 and reg["metrics"]["mae"] > 0
    ml = fit_classifier(make_config(avd, "late", target="tags"), tmp_path / "m", progress=False)
    assert ml["problem"] == "multilabel"
    assert ml["metrics"]["accuracy"] > 0.35 and ml["metrics"]["auroc"] > 0.8
    doc = load_classifier(tmp_path / "m").doc
    assert doc["labels"] == ["big", "even", "odd", "prime", "small"]


def test_config_from_yaml(avd, tmp_path):
    import yaml

    cfg = make_config(avd, "attention", fusion_options={"attn_dim": 16})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    from polymodal.core.config import load_config

    assert load_config(ClassifierConfig, path, {}, progress=cfg.train.progress) == cfg


def edited_manifest(path: Path, avd: Path, n: int, **columns) -> Path:
    """The first ``n`` rows of the tiny set's manifest with ``columns`` set (None: removed),
    written to ``path``."""
    rows = [json.loads(x) for x in avd.read_text().splitlines()[:n]]
    for r in rows:
        for k, v in columns.items():
            if v is None:
                r.pop(k, None)
            else:
                r[k] = v
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_errors(avd, tmp_path):
    feats = str(avd.parent / "features")

    def fit(manifest, **kw):
        kw.setdefault("modalities", ["image", "audio"])
        cfg = ClassifierConfig(manifest=str(manifest), features=feats, train=FAST, **kw)
        return fit_classifier(cfg, tmp_path / "run", progress=False)

    with pytest.raises(UsageError, match=r"unknown fusion 'nope'; valid: early, .*unimodal:audio"):
        fit(avd, fusion="nope")
    with pytest.raises(UsageError, match="target column 'colour' not found; valid targets: "
                                         "label, speaker, parity"):
        fit(avd, target="colour")
    with pytest.raises(UsageError, match="target column 'label' not found"):
        fit(edited_manifest(tmp_path / "m.jsonl", avd, 200, label=None))
    with pytest.raises(PolymodalError, match="column 'label' has 1 class \\(7\\) in the training"):
        fit(edited_manifest(tmp_path / "m.jsonl", avd, 200, label=7))
    with pytest.raises(DataError, match=r"row 1, column 'note': column 'note' row 1: 'ok' is not "
                                        "a number"):
        fit(avd, target="note", task="regression")
    with pytest.raises(UsageError, match="needs at least 2 modalities"):
        fit(avd, modalities=["image"])
    with pytest.raises(UsageError, match="modality 'text' has no column"):
        fit(avd, modalities=["image", "text"])
