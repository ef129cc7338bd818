"""Long audio is used in full (issue 11): `transcribe` used to keep only the first 30 s window
and say nothing; audio features were cut at 30 s silently.

The long file is ~70 s of real FSDD recordings (8 kHz; random digits, the six speakers in
turn, 0.5 s of silence between clips), so what was spoken, and when, is known exactly."""
from __future__ import annotations

import contextlib
import difflib
import io
import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("faster_whisper")

from polymodal.cli.main import main  # noqa: E402
from polymodal.data import limits  # noqa: E402
from polymodal.features.encoders.audio import (LogMelEncoder, log_mel,  # noqa: E402
                                               logmel_stats, trim_quiet)

pytestmark = pytest.mark.timeout(120)

SPEAKERS = ["jackson", "nicolas", "theo", "george", "lucas", "yweweler"]
WORDS = "zero one two three four five six seven eight nine".split()
RATE = 8000


@pytest.fixture(scope="module")
def long_wav(shared_data, tmp_path_factory):
    """(path, digits spoken, onset of each in seconds, duration) of a ~70 s recording."""
    rec = shared_data / "fsdd" / "recordings"
    rng = np.random.default_rng(0)
    gap = np.zeros(RATE // 2, np.float32)
    parts, digits, onsets, n = [], [], [], 0
    while n < 70 * RATE:
        d, k = int(rng.integers(10)), int(rng.integers(50))
        w, _ = sf.read(rec / f"{d}_{SPEAKERS[len(digits) % 6]}_{k}.wav", dtype="float32")
        w = 0.5 * w / (np.abs(w).max() + 1e-9)
        parts += [w, gap]
        digits.append(d)
        onsets.append(n / RATE)
        n += len(w) + len(gap)
    path = tmp_path_factory.mktemp("long") / "digits70.wav"
    sf.write(path, np.concatenate(parts), RATE)
    return path, digits, np.array(onsets), n / RATE


def digit_seq(text: str) -> list[int]:
    """Digits in a transcript: "7", "seven" and "4,532" (four digits) all count."""
    return [int(t) if t.isdigit() else WORDS.index(t)
            for t in re.findall(r"[a-z]+|\d", text.lower()) if t.isdigit() or t in WORDS]


def recognised(spoken: list[int], text: str) -> np.ndarray:
    """Which spoken digits the transcript has, in order (longest common subsequence)."""
    m = difflib.SequenceMatcher(None, spoken, digit_seq(text), autojunk=False)
    hit = np.zeros(len(spoken), bool)
    for b in m.get_matching_blocks():
        hit[b.a:b.a + b.size] = True
    return hit


@pytest.fixture(scope="module")
def transcriber():
    from polymodal.tasks.transcribe import Transcriber

    return Transcriber(threads=2)


@pytest.fixture(scope="module")
def full(long_wav, transcriber):
    from polymodal.tasks.transcribe import transcribe

    return transcribe([long_wav[0]], transcriber, progress=False)


def _cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, out.getvalue(), err.getvalue()


def test_long_audio_is_transcribed_in_full(long_wav, full, transcriber):
    path, spoken, onsets, seconds = long_wav
    assert full.problems == [] and full.durations[0] == pytest.approx(seconds, abs=1e-3)
    hit = recognised(spoken, full.texts[0])
    # before the fix: the first 30 s window only (what `transcribe` returned for this file)
    old = recognised(spoken, transcriber.transcribe_waves([transcriber.load(path)])[0])
    last = onsets >= seconds - 30
    print(f"\n{seconds:.1f} s, {len(spoken)} digits spoken: recognised {hit.sum()} "
          f"({hit.mean():.0%}), last 30 s {hit[last].sum()}/{last.sum()}; first window only: "
          f"{old.sum()} ({old.mean():.0%}), last 30 s {old[last].sum()}; {full.seconds:.1f} s")
    assert hit.mean() >= 0.8 and hit[last].mean() >= 0.8
    # nothing transcribed twice (faster-whisper's long form repeated ~27 digits of such a file)
    assert len(digit_seq(full.texts[0])) <= len(spoken) + 2
    assert old.mean() < 0.5 and old[last].sum() == 0  # the data loss this fixes


def test_segments_have_increasing_times_within_the_file(long_wav, full):
    segs, seconds = full.segments[0], long_wav[3]
    assert len(segs) >= 3 and all(s.text for s in segs)
    assert segs[-1].end > seconds - 30  # the last window is there
    for a, b in zip(segs, segs[1:]):
        assert a.start <= a.end <= b.start + 1e-6 and b.start < b.end
    assert 0 <= segs[0].start and segs[-1].end <= seconds + 1e-6
    assert full.texts[0] == " ".join(s.text for s in segs)


def test_block_decoding_cuts_in_silence_and_loses_nothing(long_wav, transcriber, monkeypatch):
    """10-minute blocks bound memory; with 25 s blocks this file is decoded in four, each cut
    at a pause in its last 5 s, covering every sample once; each block is cut into chunks of at
    most 10 s, again in pauses, transcribed at their own offsets."""
    import polymodal.tasks.transcribe as T

    path = long_wav[0]
    blocks = list(T.audio_blocks(path, block_seconds=25))
    wav = next(T.audio_blocks(path, block_seconds=1000))[1]
    assert len(blocks) == 4 and blocks[0][0] == 0.0
    assert all(20 <= len(b) / T.SAMPLE_RATE <= 25 for _, b in blocks[:-1])
    for (t0, b), (t1, _) in zip(blocks, blocks[1:]):
        assert t1 == pytest.approx(t0 + len(b) / T.SAMPLE_RATE, abs=1e-3)
        cut = int(t1 * T.SAMPLE_RATE)
        assert np.abs(wav[cut - 400:cut + 400]).max() < 0.01  # inside a pause between digits
    assert sum(len(b) for _, b in blocks) == pytest.approx(len(wav), abs=3)
    seen = []
    monkeypatch.setattr(T, "BLOCK_SECONDS", 25.0)
    monkeypatch.setattr(transcriber, "transcribe_waves", lambda ws: seen.append(
        [len(w) for w in ws]) or ["x"] * len(ws))
    segs = transcriber.transcribe_long(path)
    assert [sum(n) for n in seen] == [len(b) for _, b in blocks]  # chunks tile each block
    assert all(n <= 10 * T.SAMPLE_RATE for ns in seen for n in ns)
    starts = [s.start for s in segs]
    assert set(t for t, _ in blocks) <= set(starts) and starts == sorted(starts)
    for a, b in zip(segs, segs[1:]):
        assert b.start == pytest.approx(a.end, abs=1e-6)  # contiguous: nothing lost or repeated
        if b.start not in [t for t, _ in blocks]:
            cut = int(b.start * T.SAMPLE_RATE)
            assert np.abs(wav[cut - 400:cut + 400]).max() < 0.01  # chunk cut inside a pause


def test_long_file_with_bad_samples_is_reported_and_the_run_goes_on(long_wav, shared_data,
                                                                     transcriber, tmp_path):
    from polymodal.tasks.transcribe import transcribe

    wav, rate = sf.read(long_wav[0], dtype="float32")
    wav[int(45 * rate)] = np.nan  # past the first window: found while the blocks are decoded
    bad = tmp_path / "nan.wav"
    sf.write(bad, wav, rate, subtype="FLOAT")
    short = shared_data / "fsdd" / "recordings" / "3_jackson_10.wav"
    res = transcribe([bad, short], transcriber, progress=False)
    assert res.texts[0] is None and digit_seq(res.texts[1]) == [3]
    assert [str(p) for p in res.problems] == [f"{bad}: audio contains NaN or infinite samples"]


def _cues(text: str, fmt: str) -> list[tuple[float, float, str]]:
    sep = "," if fmt == "srt" else "."
    stamp = rf"(\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d)"
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n\n")
        text = text[len("WEBVTT\n\n"):]
    cues = []
    for n, block in enumerate(text.strip("\n").split("\n\n"), 1):
        lines = block.split("\n")
        if fmt == "srt":
            assert lines[0] == str(n)
            lines = lines[1:]
        m = re.fullmatch(stamp + " --> " + stamp, lines[0])
        assert m, lines[0]
        g = [int(x) for x in m.groups()]
        t = [g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6]
             + g[7] / 1000]
        assert len(lines) == 2 and lines[1].strip()
        cues.append((t[0], t[1], lines[1]))
    return cues


def test_cli_writes_srt_and_vtt_with_monotone_times(long_wav, shared_data, tmp_path):
    path, spoken, _, seconds = long_wav
    short = shared_data / "fsdd" / "recordings" / "3_jackson_10.wav"
    rc, out, err = _cli(["transcribe", str(path), str(short), "--srt", str(tmp_path / "s"),
                         "--vtt", str(tmp_path / "v"), "-q"])
    assert rc == 0 and f"SRT: 2 files written to {tmp_path / 's'}" in err
    lines = dict(line.split("\t", 1) for line in out.splitlines())
    assert recognised(spoken, lines[str(path)]).mean() >= 0.8
    assert digit_seq(lines[str(short)]) == [3]
    for fmt in ("srt", "vtt"):
        cues = _cues((tmp_path / fmt[0] / f"digits70.{fmt}").read_text(), fmt)
        assert len(cues) >= 3 and cues[0][0] == 0.0 and cues[-1][1] <= seconds + 1e-3
        assert all(a[0] <= a[1] <= b[0] <= b[1] for a, b in zip(cues, cues[1:]))
        assert recognised(spoken, " ".join(c[2] for c in cues)).mean() >= 0.8
        one = _cues((tmp_path / fmt[0] / f"3_jackson_10.{fmt}").read_text(), fmt)
        assert [c[:2] for c in one] == [(0.0, round(sf.info(short).duration, 3))]
        assert digit_seq(one[0][2]) == [3]  # "3" (fp32) or "three." (int8, the default)
    assert "1\n00:00:00,000 --> " in (tmp_path / "s" / "digits70.srt").read_text()


def test_file_over_the_limit_is_refused_in_one_line_before_the_model_loads(long_wav,
                                                                           monkeypatch):
    import polymodal.tasks.transcribe as T

    path, _, _, seconds = long_wav
    monkeypatch.setattr(limits, "MAX_TRANSCRIBE_SECONDS", 60.0)

    def no_model(*a, **k):
        raise AssertionError("the model was loaded for a file that is refused")

    monkeypatch.setattr(T, "Transcriber", no_model)
    rc, out, err = _cli(["transcribe", str(path), "-q"])
    assert rc == 2 and out == ""
    assert err == (f"error: {path}: audio is {seconds:.1f} s long, over the limit of 60 s for "
                   f"transcription (MAX_TRANSCRIBE_SECONDS); split the file\n")


def test_subtitle_name_clash_and_manifest_are_refused_before_work(tmp_path, long_wav):
    path = long_wav[0]
    (tmp_path / "b").mkdir()
    other = tmp_path / "b" / path.name
    other.write_bytes(path.read_bytes())
    rc, _, err = _cli(["transcribe", str(path), str(other), "--vtt", str(tmp_path / "v")])
    assert rc == 2 and err == (f"error: --vtt: {path} and {other} would both write "
                               f"{tmp_path / 'v' / 'digits70.vtt'}; transcribe them in separate "
                               f"runs or rename one\n")
    rc, _, err = _cli(["transcribe", "--manifest", "m.jsonl", "--out", "o.jsonl", "--srt", "d"])
    assert rc == 2 and err == "error: --srt / --vtt write subtitles for audio files, not for " \
                              "--manifest\n"
    assert not (tmp_path / "v").exists()


# ------------------------------------------------------------------ features
def _thirds(n: int) -> list[tuple[int, int]]:
    return [(round(j * n / 3), round((j + 1) * n / 3)) for j in range(3)]


@pytest.fixture(scope="module")
def whisper():
    from polymodal.features.encoders.whisper import WhisperEncoder

    return WhisperEncoder(threads=2)


def test_long_audio_features_pool_every_window(long_wav, whisper):
    wav = whisper.prepare(long_wav[0])
    assert len(wav) == pytest.approx(long_wav[3] * 16000, abs=2)
    v = whisper.encode_prepared([wav])[0]
    first = whisper.encode_prepared([wav[:30 * 16000]])[0]  # what the 30 s cut gave
    thirds = _thirds(len(wav))
    parts = whisper.encode_prepared([wav[a:b] for a, b in thirds])
    sizes = torch.tensor([b - a for a, b in thirds], dtype=torch.float32)[:, None]
    cos = torch.nn.functional.cosine_similarity(v, first, dim=0).item()
    print(f"\nwhisper 70 s vs first 30 s: cosine {cos:.4f}")
    assert cos < 0.99
    torch.testing.assert_close(v, (parts * sizes).sum(0) / sizes.sum(), atol=1e-4, rtol=1e-4)


def test_encode_states_windows_and_user_cap(long_wav, shared_data, whisper, tmp_path):
    from polymodal.features.encode import encode_manifest
    from polymodal.features.encoders.whisper import WhisperEncoder

    path, _, _, seconds = long_wav
    short = shared_data / "fsdd" / "recordings" / "3_jackson_10.wav"
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps({"id": i, "audio": str(p)}) + "\n"
                         for i, p in enumerate([short, path])))
    pooled = f"{path}: audio is {seconds:.1f} s long; features pooled over 3 windows of " \
             f"{seconds / 3:.1f} s (mean)"
    capped = f"{path}: audio is {seconds:.1f} s long; only the first 30 s are used"
    vec = {}
    for name, enc, note in (("pooled", whisper, pooled),
                            ("capped", WhisperEncoder(threads=2, max_seconds=30), capped)):
        res = encode_manifest(m, tmp_path / name, encoders={"audio": enc},
                              cache_dir=tmp_path / "cache", progress=False)
        assert res.skipped == [] and [(p.row, p.level, p.reason) for p in res.notes] == \
            [(2, "warning", note)]
        rows = [json.loads(x) for x in (tmp_path / name / "notes.jsonl").read_text().splitlines()]
        assert [(r["row"], r["column"], r["reason"]) for r in rows] == [(2, "audio", note)]
        assert f"  row 2  audio: {note}" in res.table().splitlines()
        vec[name] = np.load(tmp_path / name / "audio.npy").astype(np.float32)
    assert np.allclose(vec["pooled"][0], vec["capped"][0], atol=1e-3)  # 1 s clip: the same
    first = whisper.encode_prepared([whisper.prepare(path)[:30 * 16000]]).numpy()[0]
    assert np.allclose(vec["capped"][1], first, atol=2e-3)  # float16 storage
    assert not np.allclose(vec["pooled"][1], first, atol=2e-2)


def test_short_clip_vectors_are_unchanged(shared_data, whisper):
    """A clip of at most 30 s is one window: the vector is the one the 30 s-window encoder
    gave (computed here the old way), for whisper-tiny and logmel."""
    from polymodal.features.encoders.whisper import pad_frames

    clip = shared_data / "fsdd" / "recordings" / "7_theo_20.wav"
    wav = whisper.prepare(clip)
    feats = whisper.feature_extractor(wav)
    content = feats.shape[1] - 1
    old = whisper._encode(pad_frames(feats[:, :content])[None].astype(np.float32), [content])
    assert torch.equal(whisper.encode([clip]), old)
    assert "window=30s|pool=mean-content|windows=mean|max=600.0s" in whisper.id
    lm, lm_all = LogMelEncoder(), LogMelEncoder(max_seconds=None)
    w = lm.prepare(clip)
    before = logmel_stats(trim_quiet(log_mel(w, lm.filters, lm.n_fft, lm.hop), lm.trim_db))
    assert np.array_equal(lm.encode([clip], numpy=True)[0], before)
    assert np.array_equal(lm_all.encode([clip], numpy=True)[0], before)
    assert lm.id.endswith("|max=600.0s|stats=mean,std,dmean,dstd|windows=30s-mean")
    assert "windows=" not in LogMelEncoder(max_seconds=30).id  # one window: the old id


def test_logmel_without_cut_pools_windows(long_wav):
    lm = LogMelEncoder(max_seconds=None)
    wav = lm.prepare(long_wav[0])
    v = lm.features(wav)
    thirds = _thirds(len(wav))
    parts = np.stack([lm.features(wav[a:b]) for a, b in thirds])
    sizes = np.array([b - a for a, b in thirds], np.float64)[:, None]
    assert np.allclose(v, (parts * sizes).sum(0) / sizes.sum(), atol=1e-5)
    assert not np.allclose(v, lm.features(wav[:30 * 16000]), atol=1e-3)
    assert lm.media_note(long_wav[0]) == (f"audio is {long_wav[3]:.1f} s long; features pooled "
                                          f"over 3 windows of {long_wav[3] / 3:.1f} s (mean)")
