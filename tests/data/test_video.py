"""Video decoding (probe, frame sampling, audio track), the video manifest column and the
av-digits-video builder, on clips made in tmp_path from real MNIST digits and FSDD recordings."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytestmark = pytest.mark.timeout(120)

DATA = Path("/work/shared/data")
if not (DATA / "mnist").is_dir() or not (DATA / "fsdd").is_dir():
    pytest.skip("real MNIST / FSDD data not found", allow_module_level=True)

from polymodal.core.errors import DecodeError, UsageError  # noqa: E402
from polymodal.data import video as V  # noqa: E402

SR = 16000


def real_clip(path: Path, digits=(7, 2, 4), fps: int = 4, audio: bool = True) -> Path:
    """One second per digit: a real MNIST image of it, and (from 0.1 s into its second) a
    real FSDD recording of it by speaker 'theo'."""
    from polymodal.data.audio import load_audio
    from polymodal.data.datasets.mnist import load_mnist

    images, labels = load_mnist(DATA / "mnist")
    frames, track = [], np.zeros(len(digits) * SR, np.float32)
    for k, d in enumerate(digits):
        img = images[int(np.flatnonzero(labels == d)[0])]
        big = np.kron(img, np.ones((2, 2), np.uint8))  # 56 px
        frames += [np.repeat(big[:, :, None], 3, axis=2)] * fps
        wav = load_audio(DATA / "fsdd" / "recordings" / f"{d}_theo_0.wav", SR)[: int(0.8 * SR)]
        s = k * SR + int(0.1 * SR)
        track[s:s + len(wav)] = wav
    return V.write_video(path, frames, fps, track if audio else None, SR)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return real_clip(tmp_path_factory.mktemp("video") / "clip.webm")


def test_probe_and_sampling_at_a_rate_and_by_scene(clip):
    info = V.probe(clip)
    assert info.has_video and info.has_audio and info.frame_size == (56, 56)
    assert abs(info.duration - 3.0) < 0.1 and info.fps == 4.0
    s = V.sample_frames(clip, fps=1)
    assert s.times == [0.0, 1.0, 2.0] and s.note is None
    assert s.frames[0].size == (56, 56)
    # the frames really differ: each shows another digit
    a = [np.asarray(f.convert("L"), np.float32) for f in s.frames]
    assert np.abs(a[0] - a[1]).mean() > 10
    sc = V.sample_frames(clip, scene=0.05)
    assert sc.times == [0.0, 1.0, 2.0]  # exactly the digit changes
    both = V.sample_frames(clip, fps=4)
    assert len(both.times) == 12


def test_the_frame_bound_is_stated(clip):
    s = V.sample_frames(clip, fps=4, max_frames=3)
    assert len(s.times) == 3 and "exceed the limit of 3 frames" in s.note
    assert s.times[-1] >= 1.5  # spread over the clip, not its first second
    sc = V.sample_frames(clip, scene=0.05, max_frames=2)
    assert len(sc.times) == 2 and "3 scene changes exceed the limit of 2" in sc.note
    with pytest.raises(UsageError, match="max frames must be within 1–256"):
        V.sample_frames(clip, max_frames=1000)


def test_audio_track_is_the_recordings_in_place(clip):
    wav = V.read_audio_track(clip, SR)
    assert wav.dtype == np.float32 and wav.ndim == 1 and abs(len(wav) / SR - 3.0) < 0.1
    rms = [float(np.sqrt(np.mean(wav[k * SR + a: k * SR + b] ** 2)))
           for k in range(3) for a, b in ((int(0.15 * SR), int(0.4 * SR)),)]
    quiet = float(np.sqrt(np.mean(wav[int(0.92 * SR):int(0.98 * SR)] ** 2)))
    assert min(rms) > 5 * max(quiet, 1e-4)
    assert len(V.read_audio_track(clip, 8000)) == pytest.approx(len(wav) / 2, abs=400)


def test_bad_files_are_one_line_errors(clip, tmp_path):
    silent = real_clip(tmp_path / "silent.mp4", audio=False)
    with pytest.raises(DecodeError, match="no audio stream in the file"):
        V.read_audio_track(silent, SR)
    data = clip.read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: len(data) // 5])
    with pytest.raises(DecodeError, match="truncated"):
        V.sample_frames(cut)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    with pytest.raises(DecodeError, match="not a video file: the file contains text"):
        V.probe(text)
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(DecodeError, match="cannot open video"):
        V.probe(junk)
    with pytest.raises(DecodeError, match="not a regular file"):
        V.probe(tmp_path)
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(DecodeError, match="not a regular file"):
        V.sample_frames(fifo)
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(SR, np.float32), SR)
    with pytest.raises(DecodeError, match="no video stream"):
        V.probe(wav)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi", ".mov"])
def test_every_container_round_trips(tmp_path, suffix):
    p = real_clip(tmp_path / f"c{suffix}", digits=(1, 2), fps=2)
    info = V.probe(p)
    assert info.has_video and info.has_audio
    times = V.sample_frames(p).times
    # AVI (MPEG-4 part 2) stores a repeated frame one tick late; the others are exact
    assert times[:2] == [0.0, 1.0] and len(times) == (3 if suffix == ".avi" else 2)
    assert abs(len(V.read_audio_track(p, SR)) / SR - 2.0) < 0.15


def test_video_column_in_validate(clip, tmp_path):
    from polymodal.data.manifest import read_manifest
    from polymodal.data.validate import validate_manifest

    data = clip.read_bytes()
    (tmp_path / "cut.webm").write_bytes(data[: len(data) // 5])
    (tmp_path / "text.mp4").write_text("hello\n" * 50)
    rows = [{"id": "ok", "video": str(clip), "text": "seven two four"},
            {"id": "cut", "video": "cut.webm", "text": "x"},
            {"id": "gone", "video": "missing.mp4", "text": "y"},
            {"id": "txt", "video": "text.mp4", "text": "z"}]
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    man = read_manifest(m)
    assert man.modalities == ["text", "video"] and man.records[0].video == clip
    rep = validate_manifest(m)
    errs = {p.row: p for p in rep.errors}
    assert sorted(errs) == [2, 3, 4] and all(p.column == "video" for p in errs.values())
    assert errs[2].reason.startswith("cut.webm: video data is truncated")
    assert errs[3].reason == "missing.mp4: file not found"
    assert errs[4].reason == "text.mp4: not a video file: the file contains text"
    assert rep.counts["video"] == 1 and rep.n_usable == 1


def test_av_digits_video_builder(tmp_path):
    from polymodal.data.datasets import build_dataset
    from polymodal.data.manifest import read_manifest

    kw = dict(limit=6, size=32, fps=4, min_digits=3, max_digits=4)
    a = build_dataset("av-digits-video", DATA, tmp_path / "a", seed=3, progress=False, **kw)
    b = build_dataset("av-digits-video", DATA, tmp_path / "b", seed=3, progress=False, **kw)
    assert a.read_text() == b.read_text()  # deterministic by seed
    man = read_manifest(a)
    assert len(man) == 6 and man.modalities == ["text", "video"]
    info = json.loads((tmp_path / "a" / "dataset_info.json").read_text())
    for r in man.records:
        timing = r.extra["timing"]
        words = r.text[0].split()
        assert [e["word"] for e in timing] == words and 3 <= len(words) <= 4
        assert r.label == r.extra["digits"][0]
        assert r.split == info["speakers"][r.extra["speaker"]]  # split by speaker
        for e in timing:  # the recording plays while its digit is shown
            assert e["image_start_s"] < e["audio_start_s"] < e["audio_end_s"] <= e["image_end_s"]
        vi = V.probe(r.video)
        assert vi.frame_size == (32, 32) and vi.has_audio
        assert abs(vi.duration - timing[-1]["image_end_s"]) < 0.15
    with pytest.raises(UsageError, match="format must be one of webm, mp4"):
        build_dataset("av-digits-video", DATA, tmp_path / "c", format="gif", progress=False)
