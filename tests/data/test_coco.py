"""COCO captions JSON -> JSONL manifest, on real openclipart images and malformed files."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from polymodal.data.coco import coco_to_manifest
from polymodal.data.manifest import read_manifest
from polymodal.data.validate import validate_manifest
from polymodal.core.errors import DataError, UsageError


def _coco(path: Path, images: list, annotations: list, **extra) -> Path:
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": annotations,
                                **extra}), encoding="utf-8")
    return path


def _real_images(shared_data, n=4):
    root = shared_data / "openclipart" / "images"
    files = sorted((root / "animals").glob("*.png"))[:n]
    return root, [f.relative_to(root).as_posix() for f in files]


def test_real_images_convert_and_validate(shared_data, tmp_path):
    root, names = _real_images(shared_data)
    images = [{"id": 100 + k, "file_name": n, "width": 128, "height": 128}
              for k, n in enumerate(names)]
    anns = [{"id": 1, "image_id": 101, "caption": "  A drawing\nof an animal. "},
            {"id": 2, "image_id": 100, "caption": "first image"},
            {"id": 3, "image_id": 101, "caption": "second caption for 101"},
            {"id": 4, "image_id": 100, "caption": "   "}]
    src = _coco(tmp_path / "captions_val2017.json", images, anns)
    out = coco_to_manifest(src, root, tmp_path / "out" / "val.jsonl", split="validation")
    assert out == (tmp_path / "out" / "val.jsonl").resolve()
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in lines] == ["100", "101", "102", "103"]  # one row per image
    assert lines[1]["text"] == ["A drawing of an animal.", "second caption for 101"]
    assert lines[0]["text"] == ["first image"] and lines[2]["text"] == []
    assert {r["split"] for r in lines} == {"val"}
    rel = lines[0]["image"]
    assert not os.path.isabs(rel)
    assert (out.parent / rel).resolve() == (root / names[0]).resolve()
    m = read_manifest(out)
    assert m.records[1].text == lines[1]["text"] and m.records[2].text is None
    assert m.records[0].image.resolve() == (root / names[0]).resolve()
    report = validate_manifest(out)
    assert report.errors == [] and report.counts["image"] == 4
    assert [p.row for p in report.warnings] == [3, 4]  # images with no caption


def test_image_paths_relative_inside_out_folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    src = _coco(tmp_path / "c.json", [{"id": 1, "file_name": "sub/a.jpg"}],
                [{"image_id": 1, "caption": "x"}])
    out = coco_to_manifest(src, tmp_path / "imgs", tmp_path / "m.jsonl")
    row = json.loads(out.read_text())
    assert row == {"id": "1", "image": "imgs/sub/a.jpg", "text": ["x"]}  # no split key


@pytest.mark.parametrize("content,phrase", [
    ({"images": []}, "missing key 'annotations'"),
    ({"annotations": []}, "missing key 'images'"),
    ({"info": 1}, "missing key 'images' and 'annotations'"),
    ([1, 2], "top level must be an object"),
    ({"images": {}, "annotations": []}, "'images' must be a list"),
    ({"images": [], "annotations": []}, "'images' is empty"),
    ({"images": [{"file_name": "a.jpg"}], "annotations": []}, "images entry 1 has no 'id'"),
    ({"images": [{"id": 1}], "annotations": []}, "images entry 1 has no 'file_name'"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}],
      "annotations": []}, "images entry 2: duplicate image id 1"),
    ({"images": [{"id": 1, "file_name": ""}], "annotations": []}, "bad 'file_name'"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1}]},
     "annotations entry 1 has no 'caption'"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 7, "caption": "x"}]},
     "annotations entry 1 (id 7) has no 'image_id'"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}],
      "annotations": [{"image_id": 1, "caption": ["x"]}]}, "non-text 'caption'"),
    ({"images": [{"id": 1, "file_name": "a.jpg"}],
      "annotations": [{"image_id": 1, "caption": "ok"}, {"image_id": 9, "caption": "x"},
                      {"image_id": 8, "caption": "y"}]},
     "annotations entry 2 refers to image_id 9, which is not in 'images' (2 such"),
])
def test_malformed_coco_raises_clear_error(tmp_path, content, phrase):
    src = tmp_path / "captions_bad.json"
    src.write_text(json.dumps(content), encoding="utf-8")
    out = tmp_path / "m.jsonl"
    with pytest.raises(DataError) as exc:
        coco_to_manifest(src, tmp_path, out)
    assert phrase in exc.value.reason
    assert exc.value.problem.file == str(src)
    assert not out.exists() and not list(tmp_path.glob(".m.jsonl*"))  # nothing half-written


def test_unreadable_files(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text('{"images": [', encoding="utf-8")
    with pytest.raises(DataError, match=r"invalid JSON: .*line 1"):
        coco_to_manifest(bad, tmp_path, tmp_path / "m.jsonl")
    bad.write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        coco_to_manifest(bad, tmp_path, tmp_path / "m.jsonl")
    with pytest.raises(DataError, match="not found"):
        coco_to_manifest(tmp_path / "nope.json", tmp_path, tmp_path / "m.jsonl")
    with pytest.raises(DataError, match="image folder not found"):
        coco_to_manifest(bad, tmp_path / "no_dir", tmp_path / "m.jsonl")


def test_bad_arguments(tmp_path):
    src = _coco(tmp_path / "c.json", [{"id": 1, "file_name": "a.jpg"}], [])
    with pytest.raises(UsageError, match=r"\.jsonl"):
        coco_to_manifest(src, tmp_path, tmp_path / "m.csv")
    with pytest.raises(UsageError, match="unknown split 'holdout'"):
        coco_to_manifest(src, tmp_path, tmp_path / "m.jsonl", split="holdout")


def test_overwrite_is_atomic_and_complete(tmp_path):
    out = tmp_path / "m.jsonl"
    out.write_text("old content\n")
    images = [{"id": k, "file_name": f"{k}.jpg"} for k in range(50)]
    anns = [{"image_id": k % 50, "caption": f"caption {k}"} for k in range(200)]
    coco_to_manifest(_coco(tmp_path / "c.json", images, anns), tmp_path, out)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 50 and all(len(r["text"]) == 4 for r in rows)
    assert rows[3]["text"] == ["caption 3", "caption 53", "caption 103", "caption 153"]
