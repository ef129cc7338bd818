"""AV-digits-video: short clips showing 3–6 MNIST digits one after another while FSDD
recordings of the same digits, by one speaker per clip, play in order.

Source: the folder holding ``mnist/`` and ``fsdd/`` (as for av-digits). Each clip gets a
speaker (uniformly at random), 3–6 random digits, for each digit a random recording of that
speaker and a random MNIST image of that digit, upscaled to ``size`` px. Digit ``k`` is shown
for its slot, ``max(min_slot, recording length + 0.2 s)`` rounded up to whole frames; its
recording starts 0.1 s into the slot. The split follows the speaker (`speaker_split`) and the
MNIST images are split too (80/10/10 by seed), so test clips have unseen voices and unseen
drawings. Clips are WebM (VP8 + Opus, playable in every browser) or MP4 (H.264 + AAC).

Manifest columns: ``video``, ``text`` (the digit words, space-separated), ``label`` (the first
digit), ``split``, ``speaker``, ``digits``, ``timing`` (a list, one entry per digit:
``word``, ``digit``, ``image_start_s``, ``image_end_s``, ``audio_start_s``, ``audio_end_s``).
Deterministic with ``seed``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from polymodal.core.errors import UsageError
from polymodal.data.datasets._common import (DIGIT_WORDS, OutputFolder, bar, check_limit,
                                             say, speaker_split, split_counts)
from polymodal.data.datasets.av_digits import find_av_source
from polymodal.data.datasets.fsdd import list_recordings
from polymodal.data.datasets.mnist import load_mnist, random_split

AUDIO_RATE = 16000
AUDIO_LEAD_S = 0.1
FORMATS = {"webm": ".webm", "mp4": ".mp4"}


def _frame(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(img, "L").resize((size, size), Image.BILINEAR)
    return np.repeat(np.asarray(im)[:, :, None], 3, axis=2)


def _wav(path: Path) -> np.ndarray:
    from polymodal.data.audio import load_audio

    return load_audio(path, sample_rate=AUDIO_RATE, max_seconds=None)


def clip_plan(rng: np.random.Generator, recs_of: dict[tuple[str, int], list[int]],
              images_of: dict[int, list[int]], speaker: str, min_digits: int,
              max_digits: int) -> list[tuple[int, int, int]]:
    """(digit, recording index, image index) for one clip."""
    k = int(rng.integers(min_digits, max_digits + 1))
    out = []
    for d in rng.integers(0, 10, size=k):
        d = int(d)
        recs, imgs = recs_of[(speaker, d)], images_of[d]
        out.append((d, recs[int(rng.integers(len(recs)))], imgs[int(rng.integers(len(imgs)))]))
    return out


def render_clip(path: Path, plan: list[tuple[int, int, int]], images: np.ndarray,
                wav_of, size: int, fps: int, min_slot: float) -> list[dict]:
    """Write one clip; -> its timing entries."""
    from polymodal.data.video import write_video

    frames, timing, t = [], [], 0.0
    sounds = []
    for d, r, i in plan:
        wav = wav_of(r)
        slot = max(min_slot, len(wav) / AUDIO_RATE + 2 * AUDIO_LEAD_S)
        n = math.ceil(slot * fps - 1e-9)
        slot = n / fps
        frames += [_frame(images[i], size)] * n
        a0 = t + AUDIO_LEAD_S
        sounds.append((a0, wav))
        timing.append({"word": DIGIT_WORDS[d], "digit": d, "image_start_s": round(t, 3),
                       "image_end_s": round(t + slot, 3), "audio_start_s": round(a0, 3),
                       "audio_end_s": round(a0 + len(wav) / AUDIO_RATE, 3)})
        t += slot
    track = np.zeros(int(round(t * AUDIO_RATE)), np.float32)
    for a0, wav in sounds:
        s = int(round(a0 * AUDIO_RATE))
        track[s:s + len(wav)] += wav[: len(track) - s]
    peak = float(np.abs(track).max()) if track.size else 0.0
    if peak > 0.99:
        track *= 0.99 / peak
    write_video(path, frames, fps, track, AUDIO_RATE)
    return timing


def build_av_digits_video(source: Path, out: Path, seed: int = 0, progress: bool = True,
                          limit: int | None = 500, size: int = 64, fps: int = 10,
                          min_digits: int = 3, max_digits: int = 6, min_slot: float = 1.0,
                          format: str = "webm") -> Path:
    """Write ``limit`` clips (default 500) and their manifest into ``out``."""
    n = check_limit(limit) or 500
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 512 or size % 2:
        raise UsageError(f"size must be an even number of pixels within 16–512, got {size!r}")
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= 60:
        raise UsageError(f"fps must be an integer within 1–60, got {fps!r}")
    if not (isinstance(min_digits, int) and isinstance(max_digits, int)
            and 1 <= min_digits <= max_digits <= 20):
        raise UsageError(f"need 1 <= min_digits <= max_digits <= 20, got {min_digits}, "
                         f"{max_digits}")
    if format not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    from polymodal.data.video import need_av

    need_av()
    folder = find_av_source(source)
    images, labels = load_mnist(folder / "mnist")
    recs = list_recordings(folder / "fsdd")
    speakers = sorted({r.speaker for r in recs})
    splits = speaker_split(speakers, seed)
    img_split = random_split(len(images), seed)
    recs_of: dict[tuple[str, int], list[int]] = {}
    for j, r in enumerate(recs):
        recs_of.setdefault((r.speaker, r.digit), []).append(j)
    pools: dict[str, dict[int, list[int]]] = {"train": {}, "val": {}, "test": {}}
    for i, (lab, sp) in enumerate(zip(labels, img_split)):
        pools[sp].setdefault(int(lab), []).append(i)
    rng = np.random.default_rng(seed)
    cache: dict[int, np.ndarray] = {}

    def wav_of(j: int) -> np.ndarray:
        if j not in cache:
            cache[j] = _wav(recs[j].path)
        return cache[j]

    suffix = FORMATS[format]
    with OutputFolder(out) as od:
        vid_dir = od.stage("videos")
        rows = []
        for c in bar(range(n), progress, "av-digits-video clips", total=n):
            spk = speakers[int(rng.integers(len(speakers)))]
            split = splits[spk]
            plan = clip_plan(rng, recs_of, pools[split], spk, min_digits, max_digits)
            name = f"clip_{c:05d}{suffix}"
            timing = render_clip(vid_dir / name, plan, images, wav_of, size, fps, min_slot)
            digits = [d for d, _, _ in plan]
            rows.append({"id": f"avv_{c:05d}", "video": f"videos/{name}",
                         "text": " ".join(DIGIT_WORDS[d] for d in digits), "label": digits[0],
                         "split": split, "speaker": spk, "digits": digits, "timing": timing,
                         "recordings": [recs[j].path.name for _, j, _ in plan],
                         "mnist_indices": [i for _, _, i in plan]})
        counts = split_counts(rows)
        info = {"name": "av-digits-video", "source": str(folder), "seed": seed,
                "rows": len(rows), "splits": counts, "speakers": splits, "size": size,
                "fps": fps, "format": format, "digits_per_clip": [min_digits, max_digits],
                "min_slot_s": min_slot, "media_dirs": ["videos"]}
        path = od.commit(rows, info)
    test_spk = ", ".join(sorted(s for s, v in splits.items() if v == "test"))
    say(f"av-digits-video: {len(rows)} clips -> {path} (train {counts['train']}, val "
        f"{counts['val']}, test {counts['test']}; test speakers {test_spk})", progress)
    return path
