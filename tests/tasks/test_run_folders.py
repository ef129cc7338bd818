"""The shared core on real data (the bundled audio-visual digits: MNIST drawings + FSDD speech):
one split policy (a half-filled split column keeps every 'test' row out of training), run folders
that work from any working directory, `--encoder m=name` overriding only that modality, checks
before any encoding, and the versioned run format."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from polymodal.cli.main import main
from polymodal.core.errors import PolymodalError
from polymodal.core.runfolder import FORMAT_VERSION, RunFolder
from polymodal.data.datasets import sample_path


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def folder_a(tmp_path_factory) -> Path:
    """A copy of the bundled av-digits sample under A/data whose split column is filled for only
    some rows: every 'test' row keeps its cell, every third other row loses it."""
    a = tmp_path_factory.mktemp("A")
    src = sample_path("av-digits").parent
    shutil.copytree(src, a / "data")
    rows = _rows(a / "data" / "manifest.jsonl")
    for i, r in enumerate(rows):
        if r["split"] != "test" and i % 3 == 0:
            r["split"] = ""
    (a / "data" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return a


@pytest.fixture(scope="module")
def runs(folder_a: Path, tmp_path_factory):
    """A retrieval run and a classification run fitted in folder A with relative paths."""
    mp = pytest.MonkeyPatch()
    mp.chdir(folder_a)
    try:
        assert main(["fit", "retrieval", "-q", "--manifest", "data/manifest.jsonl",
                     "--query", "audio", "--target", "image", "--encoder", "audio=logmel",
                     "--loss", "cca", "--dim", "8", "--relevance", "label", "--index", "exact",
                     "--no-report", "--out", "run"]) == 0
        assert main(["fit", "classify", "-q", "--manifest", "data/manifest.jsonl",
                     "--modalities", "image,audio", "--fusion", "late", "--epochs", "3",
                     "--no-report", "--out", "cls"]) == 0
    finally:
        mp.undo()
    return folder_a / "run", folder_a / "cls"


def _splits(run: Path) -> dict[str, str]:
    with open(run / "splits.csv", newline="") as fh:
        return {r["id"]: r["split"] for r in csv.DictReader(fh)}


def test_half_filled_split_column_keeps_every_test_row(folder_a, runs):
    rows = _rows(folder_a / "data" / "manifest.jsonl")
    marked_test = {r["id"] for r in rows if r["split"] == "test"}
    marked_train = {r["id"] for r in rows if r["split"] == "train"}
    assert marked_test and any(r["split"] == "" for r in rows)
    for run in runs:
        s = _splits(run)
        assert set(s) >= {r["id"] for r in rows} - {r["id"] for r in rows if not r["image"]}
        assert {i for i in marked_test if i in s} == {i for i, v in s.items()
                                                      if v == "test" and i in marked_test}
        assert all(s[i] == "test" for i in marked_test if i in s)
        assert all(s[i] in ("train", "val") for i in marked_train if i in s)  # val from train
        assert "val" in s.values()
    # every metric is computed on splits.csv: the test queries are exactly its test rows
    info = json.loads((runs[0] / "run.json").read_text())
    assert info["n_test_queries"] == sum(v == "test" for v in _splits(runs[0]).values())


def test_runs_work_from_another_working_directory(runs, tmp_path, monkeypatch, capsys):
    run, cls = runs
    monkeypatch.chdir(tmp_path)  # folder B: the relative manifest path means nothing here
    query = next(Path(run.parent / "data" / "audio").glob("*.wav"))
    capsys.readouterr()
    assert main(["search", str(run), "--audio", str(query), "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and all(Path(h["path"]).is_file() for h in hits)
    assert main(["eval", str(run), "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) == {"audio->image", "image->audio"}
    assert main(["explain", str(cls), "--repeats", "1", "--json"]) == 0
    doc = yaml.safe_load((run / "config.yaml").read_text())
    assert doc["format_version"] == FORMAT_VERSION and doc["task"] == "retrieval"
    assert Path(doc["config"]["manifest"]).is_absolute()
    assert doc["encoders"]["image"]["name"] == "efficientnet-lite0"
    assert doc["encoders"]["audio"]["id"].startswith("logmel")
    assert RunFolder.open(cls).config["features"] == str((cls / "features").resolve())
    assert yaml.safe_load((cls / "config.yaml").read_text())["config"]["features"] == "features"


def test_encoder_override_keeps_the_other_default_and_checks_run_before_encoding(
        folder_a, tmp_path, capsys):
    man = str(folder_a / "data" / "manifest.jsonl")
    base = ["fit", "retrieval", "-q", "--manifest", man, "--query", "audio", "--target", "image",
            "--loss", "cca", "--no-report"]
    for extra, msg in ((["--relevance", "speaker_group"], "no such column"),
                       (["--encoder", "text=minilm"], "this run aligns audio and image"),
                       (["--target", "audio"], "both 'audio'")):
        out = tmp_path / f"r{len(msg)}"
        assert main(base + extra + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
        assert not (out / "features").exists()  # failed before any encoding
    # a manifest whose test rows all lack audio fails before encoding too
    rows = _rows(folder_a / "data" / "manifest.jsonl")
    for r in rows:
        if r["split"] in ("test", ""):  # empty cells may hash to test
            r["audio"] = None
    bad = folder_a / "data" / "no_test_audio.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "notest"
    assert main(base[:4] + [str(bad)] + base[5:] + ["--out", str(out)]) == 2
    assert "0 test rows with both audio and image" in capsys.readouterr().err
    assert not (out / "features").exists()


def test_run_format_versions(runs, tmp_path):
    run, _ = runs
    newer = tmp_path / "newer"
    shutil.copytree(run, newer)
    doc = yaml.safe_load((newer / "config.yaml").read_text())
    (newer / "config.yaml").write_text(yaml.safe_dump({**doc, "format_version": 99}))
    with pytest.raises(PolymodalError, match="run format 99 is not readable"):
        RunFolder.open(newer)
    # format 1 (polymodal 0.1): paths relative to the fit's working directory, encoder names
    old = tmp_path / "old"
    shutil.copytree(run, old)
    v1 = {k: v for k, v in doc.items() if k not in ("format_version", "model")}
    v1.update(doc["model"], encoders={m: e["name"] for m, e in doc["encoders"].items()})
    v1["config"] = {**doc["config"], "manifest": "data/manifest.jsonl"}
    (old / "config.yaml").write_text(yaml.safe_dump(v1))
    rf = RunFolder.open(old, "retrieval")
    assert rf.format_version == 1 and rf.encoders["audio"]["name"] == "logmel"
    with pytest.raises(PolymodalError, match="re-fit with `polymodal fit retrieval`"):
        rf.require("manifest")
    with pytest.raises(PolymodalError, match="a 'retrieval' run, not a classification run"):
        RunFolder.open(old, "classification")


def test_eval_uses_the_runs_recorded_splits(runs, tmp_path):
    from polymodal.tasks.retrieval.predict import eval_run, load_run

    run, _ = runs
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    s = _splits(run)
    test_ids = [i for i, v in s.items() if v == "test"][:4]
    (copy / "splits.csv").write_text("id,split\n" + "".join(
        f"{i},{'test' if i in test_ids else 'train'}\n" for i in s))
    res = eval_run(load_run(copy), progress=False)
    for m in res.values():  # 4 test queries: every recall is a multiple of 1/4
        assert abs(m["R@1"] * 4 - round(m["R@1"] * 4)) < 1e-9
    full = eval_run(load_run(run), progress=False)
    assert full == json.loads((run / "metrics.json").read_text()) or all(
        abs(full[d][k] - v) < 1e-9 for d in full for k, v in json.loads(
            (run / "metrics.json").read_text())[d].items())


def test_encode_override_keeps_the_other_defaults(folder_a, tmp_path, capsys):
    out = tmp_path / "feats"
    assert main(["encode", str(folder_a / "data" / "manifest.jsonl"), "--out", str(out),
                 "--encoder", "audio=logmel", "-q"]) == 0
    meta = json.loads((out / "features.json").read_text())["modalities"]
    assert set(meta) == {"image", "audio", "text"}
    assert meta["image"]["name"] == "efficientnet-lite0" and meta["text"]["name"] == "minilm"


def test_partial_train_section_keeps_the_task_defaults(tmp_path):
    from polymodal.core.config import load_config
    from polymodal.tasks.caption import CaptionConfig
    from polymodal.tasks.generate import GenerateConfig

    (tmp_path / "c.yaml").write_text("manifest: m.jsonl\ntrain: {seed: 3}\n")
    c = load_config(CaptionConfig, tmp_path / "c.yaml", {})
    assert (c.train.seed, c.train.epochs, c.train.patience) == (3, 20, 4)
    g = GenerateConfig(manifest="m", train={"seed": 1})
    assert (g.train.epochs, g.train.lr, g.train.patience) == (15, 2e-3, 15)


def test_a_run_without_its_completion_marker_is_refused(runs, tmp_path, capsys):
    run, cls = runs
    for src in (run, cls):
        assert (src / "COMPLETE").is_file()
        half = tmp_path / src.name
        shutil.copytree(src, half)
        (half / "COMPLETE").unlink()  # what a fit that died after writing its weights leaves
        with pytest.raises(PolymodalError, match="incomplete run: its fit did not finish"):
            RunFolder.open(half)
    assert main(["eval", str(tmp_path / run.name), "-q"]) == 2
    err = capsys.readouterr().err
    assert "incomplete run" in err and len(err.strip().splitlines()) == 1
