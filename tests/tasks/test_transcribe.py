"""Speech -> text with the bundled Whisper tiny.en on real FSDD recordings: three clips of three
speakers through a manifest, plus one file that is not audio (skipped and reported, the run goes
on), and the CLI's error exit for audio that does not decode."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from polymodal.cli.main import main
from polymodal.tasks.transcribe import transcribe_manifest, transcript_wer

CLIPS = ["3_jackson_10.wav", "7_theo_20.wav", "5_george_30.wav"]


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tr")
    (d / "broken.wav").write_text("this is not audio\n")
    rec = shared_data / "fsdd" / "recordings"
    rows = [{"id": c, "audio": str(rec / c), "text": c.split("_")[0]} for c in CLIPS]
    rows.insert(1, {"id": "broken", "audio": "broken.wav", "text": "zero"})
    m = d / "manifest.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def test_transcribe_manifest_adds_column_and_skips_bad_audio(manifest, tmp_path):
    out = tmp_path / "sub" / "with_transcripts.jsonl"
    res = transcribe_manifest(manifest, out, column="asr", progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [CLIPS[0], "broken", CLIPS[1], CLIPS[2]]
    assert rows[1]["asr"] is None
    bad = [p for p in res.problems if p.level == "error"]
    assert len(bad) == 1 and bad[0].row == 2 and "not an audio file" in bad[0].reason
    # media paths still point at the same files from the new folder
    assert (out.parent / rows[1]["audio"]).resolve() == (manifest.parent / "broken.wav").resolve()
    hyps = [r["asr"] for r in rows if r["asr"] is not None]
    refs = [r["text"] for r in rows if r["asr"] is not None]
    assert len(hyps) == 3
    # digits as words: "7." and "seven" both count as correct; at most one clip wrong (a wrong
    # clip may be two words: int8, the default, heard "5" as "All right.")
    from polymodal.metrics.textgen import normalize_transcript

    right = [normalize_transcript(h) == normalize_transcript(r) for h, r in zip(hyps, refs)]
    assert sum(right) >= 2, hyps
    assert transcript_wer(hyps, refs) <= 2 / 3


def test_transcribe_cli_bad_audio_exits_2(manifest, capsys):
    assert main(["transcribe", str(manifest.parent / "broken.wav"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not an audio file" in err


def test_transcribe_cli_needs_input(capsys):
    assert main(["transcribe"]) == 2
    assert "give audio files or --manifest" in capsys.readouterr().err
