"""Sort-of-CLEVR builder: answers re-computed independently from scenes.json, the rendered
pixels checked against the scene, splits by image, determinism by seed."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from polymodal.core.errors import UsageError
from polymodal.data.datasets import build_dataset
from polymodal.data.manifest import read_manifest

RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
       "orange": (255, 156, 0), "gray": (128, 128, 128), "yellow": (255, 255, 0)}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("soc") / "soc"
    build_dataset("sort-of-clevr", Path("."), out, seed=3, progress=False, n_images=40)
    return out


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _expected(objs: list[dict], colour: str, text: str) -> str:
    """Independent answer: numpy distances, the question read from its words."""
    pos = np.array([o["center"] for o in objs], float)
    k = [o["colour"] for o in objs].index(colour)
    d = np.sqrt(((pos - pos[k]) ** 2).sum(1))
    d_other = np.where(np.arange(len(objs)) == k, np.nan, d)
    if "closest" in text:
        return objs[int(np.nanargmin(d_other))]["shape"]
    if "furthest" in text:
        return objs[int(np.nanargmax(d_other))]["shape"]
    if text.startswith("How many"):
        return str(sum(o["shape"] == objs[k]["shape"] for o in objs))
    if "left or right" in text:
        return "left" if pos[k, 0] < 37.5 else "right"
    if "top or bottom" in text:
        return "top" if pos[k, 1] < 37.5 else "bottom"
    assert text == f"What is the shape of the {colour} object?"
    return objs[k]["shape"]


def test_answers_match_an_independent_recomputation(built):
    scenes = json.loads((built / "scenes.json").read_text())
    rows = _rows(built)
    assert len(rows) == 40 * 20 and len(scenes) == 40
    for r in rows:
        objs = scenes[r["image_id"]]
        assert r["colour"] in r["text"]
        assert r["label"] == _expected(objs, r["colour"], r["text"]), r
        assert r["question_type"] == ("relational" if r["template"] in
                                      ("closest", "furthest", "count") else "non-relational")
    per_image = Counter((r["image_id"], r["question_type"]) for r in rows)
    assert set(per_image.values()) == {10}  # 10 relational + 10 non-relational per image
    assert len({(r["image_id"], r["text"]) for r in rows}) == len(rows)  # no repeats
    labels = Counter(r["label"] for r in rows if r["template"] == "count")
    assert len(labels) >= 3  # counts vary


def test_scenes_are_rendered_as_described(built):
    scenes = json.loads((built / "scenes.json").read_text())
    for image_id, objs in list(scenes.items())[:10]:
        px = np.asarray(Image.open(built / "images" / f"{image_id}.png").convert("RGB"))
        assert px.shape == (75, 75, 3)
        assert sorted(o["colour"] for o in objs) == sorted(RGB)
        for o in objs:
            x, y = o["center"]
            assert tuple(px[y, x]) == RGB[o["colour"]]
            corner = tuple(px[y - 5, x - 5])  # inside a square, outside a circle
            assert (corner == RGB[o["colour"]]) == (o["shape"] == "square"), (image_id, o)
        c = np.array([o["center"] for o in objs])
        gaps = np.abs(c[:, None] - c[None]).max(-1) + 100 * np.eye(6)
        assert gaps.min() >= 12  # never touching


def test_split_by_image_and_deterministic(built, tmp_path):
    rows = _rows(built)
    split_of: dict[str, set] = {}
    for r in rows:
        split_of.setdefault(r["image_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())
    assert Counter(next(iter(s)) for s in split_of.values()) == {"train": 32, "val": 4,
                                                                 "test": 4}
    again = tmp_path / "again"
    build_dataset("sort-of-clevr", Path("."), again, seed=3, progress=False, n_images=40)
    assert (again / "manifest.jsonl").read_text() == (built / "manifest.jsonl").read_text()
    assert (again / "scenes.json").read_text() == (built / "scenes.json").read_text()
    other = tmp_path / "other"
    build_dataset("sort-of-clevr", Path("."), other, seed=4, progress=False, n_images=40)
    assert (other / "scenes.json").read_text() != (built / "scenes.json").read_text()
    man = read_manifest(built / "manifest.jsonl")
    assert man.records[0].image.is_file() and man.records[0].extra["template"]


def test_bad_options(tmp_path):
    with pytest.raises(UsageError, match="n_images"):
        build_dataset("sort-of-clevr", Path("."), tmp_path / "x", n_images=0)
    with pytest.raises(UsageError, match="questions"):
        build_dataset("sort-of-clevr", Path("."), tmp_path / "x", questions=37)


def test_cli_build_needs_no_source(tmp_path, capsys):
    from polymodal.cli.main import main

    assert main(["datasets", "build", "sort-of-clevr", "--out", str(tmp_path / "s"),
                 "--n-images", "5", "--option", "questions=6", "-q"]) == 0
    assert len(_rows(tmp_path / "s")) == 30
    assert main(["datasets", "build", "fsdd", "--out", str(tmp_path / "f"), "-q"]) != 0
    assert "needs --source" in capsys.readouterr().err
