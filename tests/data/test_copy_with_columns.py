"""`copy_with_columns`: the manifest copy behind `transcribe --manifest` and `speak --manifest`."""
import json

import pytest

from polymodal.data.manifest import MEDIA, copy_with_columns

pytestmark = pytest.mark.timeout(30)


def test_media_paths_are_rebased_and_new_columns_added(tmp_path):
    src = tmp_path / "a" / "m.jsonl"
    src.parent.mkdir()
    rows = [{"id": "r0", "image": "img/0.png", "video": "v/0.webm", "text": "x/y"},
            {"id": "r1", "image": "/abs/1.png", "video": "", "text": "z"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "b" / "c" / "out.jsonl"
    copy_with_columns(src, out, {"transcript": {1: "hello"}}, [m for m in MEDIA if m != "audio"])
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got[0]["image"] == "../../a/img/0.png" and got[0]["video"] == "../../a/v/0.webm"
    assert got[0]["text"] == "x/y"  # not a media column: unchanged
    assert got[1]["image"] == "/abs/1.png" and got[1]["video"] == ""
    assert [g["transcript"] for g in got] == ["hello", None]  # row numbers start at 1


def test_same_folder_keeps_paths(tmp_path):
    src = tmp_path / "m.jsonl"
    src.write_text(json.dumps({"id": "r0", "image": "img/0.png"}) + "\n")
    out = copy_with_columns(src, tmp_path / "m2.jsonl", {"voice": {}}, ["image"])
    assert json.loads(out.read_text()) == {"id": "r0", "image": "img/0.png", "voice": None}
