"""AV-digits: each MNIST test image paired with an FSDD recording of the same digit.

Source: a folder containing ``mnist/`` and ``fsdd/`` (e.g. ``../shared/data``). Pairing is
deterministic with ``seed``: every image gets a random recording of its digit, so with 10,000
images and 3,000 recordings each recording is reused by about 3.3 images. The split follows the
recording's speaker (about 4 train / 1 val / 1 test speakers), so test speakers are unseen in
training; each image appears once, in the split of its recording.

``hard=True`` (or the name ``av-digits-hard``) follows the MultiBench AV-MNIST recipe: images
lose the top principal components that hold 75 % of the pixel energy (PCA fitted on all
images of the source, independent of ``limit``) and each used recording is mixed with white
noise at ``snr_db`` (default 0 dB: a simple MFCC + logistic-regression
classifier on unseen speakers drops from about 72 % to about 53 % accuracy, and Whisper tiny.en
transcripts no longer contain the digit). Hard mode writes new WAV files (one noisy copy per used
recording, noise seeded by ``seed``); the clean variant references the FSDD recordings in place.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from polymodal.data.datasets._common import (DIGIT_WORDS, OutputFolder, as_list, bar,
                                             check_limit, find_source, rel, say, speaker_split,
                                             split_counts)
from polymodal.data.datasets.fsdd import Recording, list_recordings
from polymodal.data.datasets.mnist import IMAGES, LABELS, load_mnist, write_png
from polymodal.core.errors import PolymodalError, UsageError

EXPECTED = (f"mnist/ (with {IMAGES}, {LABELS}) and fsdd/ (with recordings/*.wav) side by side, "
            "e.g. ../shared/data")
DEFAULT_SNR_DB = 0.0
ENERGY_REMOVED = 0.75


def find_av_source(source: str | Path) -> Path:
    """The folder holding ``mnist/`` and ``fsdd/`` (``source`` itself), or a clear error."""
    return find_source(source, "av-digits", ".", ["mnist/" + IMAGES, "mnist/" + LABELS,
                                                  "fsdd/recordings/*.wav"], EXPECTED)


def remove_pca_energy(images: np.ndarray, energy: float = ENERGY_REMOVED
                      ) -> tuple[np.ndarray, int]:
    """Drop the top principal components holding ``energy`` of the (centred) pixel variance
    and reconstruct. Returns uint8 images of the same shape and the number of components
    dropped."""
    if not 0 <= energy < 1:
        raise UsageError(f"energy to remove must be in [0, 1), got {energy}")
    n = len(images)
    x = images.reshape(n, -1).astype(np.float32) / 255.0
    mean = x.mean(axis=0)
    xc = x - mean
    evals, evecs = np.linalg.eigh((xc.T @ xc).astype(np.float64))
    evecs = evecs.astype(np.float32)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    cum = np.cumsum(evals) / max(evals.sum(), 1e-12)
    k = int(np.searchsorted(cum, energy) + 1) if energy > 0 else 0
    top = evecs[:, :k]
    resid = xc - (xc @ top) @ top.T
    out = np.clip((mean + resid) * 255.0, 0, 255).round().astype(np.uint8)
    return out.reshape(images.shape), k


def add_white_noise(wav: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Mix ``wav`` with white Gaussian noise at ``snr_db`` (signal power over the whole clip);
    rescaled to stay within [-1, 1]."""
    power = float(np.mean(wav.astype(np.float64) ** 2)) or 1e-8
    noise = rng.standard_normal(len(wav)) * np.sqrt(power / 10 ** (snr_db / 10))
    mixed = wav + noise
    peak = float(np.max(np.abs(mixed))) if len(mixed) else 0.0
    return (mixed / peak * 0.99 if peak > 0.99 else mixed).astype(np.float32)


def pair_images(labels: np.ndarray, recs: list[Recording], seed: int) -> list[int]:
    """For each image label, the index (into ``recs``) of a random recording of that digit."""
    by_digit: dict[int, list[int]] = {}
    for j, r in enumerate(recs):
        by_digit.setdefault(r.digit, []).append(j)
    missing = sorted({int(d) for d in labels} - set(by_digit))
    if missing:
        raise PolymodalError(f"no FSDD recording for digit(s) {missing}")
    rng = np.random.default_rng(seed)
    return [by_digit[int(d)][int(rng.integers(len(by_digit[int(d)])))] for d in labels]


def build_av_digits(source: Path, out: Path, seed: int = 0, progress: bool = True,
                    limit: int | None = None, hard: bool = False,
                    snr_db: float = DEFAULT_SNR_DB, energy: float = ENERGY_REMOVED,
                    copy_audio: bool = False, test_speakers: list[str] | str | None = None,
                    val_speakers: list[str] | str | None = None) -> Path:
    """Write the AV-digits manifest (image, audio, text, label, speaker; split by speaker).
    ``limit`` keeps the first N MNIST images (one pair each)."""
    limit = check_limit(limit)
    if not isinstance(hard, bool):
        raise UsageError(f"hard must be true or false, got {hard!r}")
    try:
        snr_db = float(snr_db)
    except (TypeError, ValueError):
        raise UsageError(f"snr_db must be a number, got {snr_db!r}") from None
    folder = find_av_source(source)
    images, labels = load_mnist(folder / "mnist")
    recs = list_recordings(folder / "fsdd")
    splits = speaker_split((r.speaker for r in recs), seed, as_list(test_speakers),
                           as_list(val_speakers))
    n_dropped = 0
    if hard:
        images, n_dropped = remove_pca_energy(images, float(energy))  # fit on all images
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    pairs = pair_images(labels, recs, seed)
    name = "av-digits-hard" if hard else "av-digits"
    with OutputFolder(out) as od:
        img_dir = od.stage("images")
        audio_dir = od.stage("audio") if hard or copy_audio else None
        audio_of = _write_audio(sorted(set(pairs)), recs, audio_dir, od.out, hard, snr_db,
                                seed, progress)
        rows = []
        for i in bar(range(len(images)), progress, f"{name} images"):
            write_png(images[i], img_dir / f"mnist_{i:05d}.png")
            r = recs[pairs[i]]
            d = int(labels[i])
            rows.append({"id": f"av_{i:05d}", "image": f"images/mnist_{i:05d}.png",
                         "audio": audio_of[pairs[i]], "text": DIGIT_WORDS[d], "label": d,
                         "split": splits[r.speaker], "speaker": r.speaker,
                         "recording": r.path.name, "mnist_index": i})
        counts = split_counts(rows)
        info = {"name": name, "source": str(folder), "seed": seed, "rows": len(rows),
                "splits": counts, "speakers": splits, "hard": hard,
                "recordings_used": len(set(pairs)),
                "media_dirs": ["images"] + (["audio"] if audio_dir is not None else [])}
        if hard:
            info.update(snr_db=snr_db, energy_removed=float(energy),
                        pca_components_dropped=n_dropped)
        path = od.commit(rows, info)
    extra = (f"; hard: dropped top {n_dropped} PCA components ({energy:.0%} energy), white "
             f"noise at {snr_db:g} dB SNR" if hard else "")
    test_spk = ", ".join(sorted(s for s, v in splits.items() if v == "test"))
    say(f"{name}: {len(rows)} pairs using {len(set(pairs))} recordings -> {path} (train "
        f"{counts['train']}, val {counts['val']}, test {counts['test']}; test speakers "
        f"{test_spk}){extra}", progress)
    return path


def _write_audio(used: list[int], recs: list[Recording], audio_dir: Path | None, out: Path,
                 hard: bool, snr_db: float, seed: int, progress: bool) -> dict[int, str]:
    """Manifest audio path for each used recording index (noisy copies in hard mode)."""
    if audio_dir is None:
        return {j: rel(recs[j].path, out) for j in used}
    import soundfile as sf

    paths = {}
    for j in bar(used, progress, "audio"):
        r = recs[j]
        if hard:
            wav, sr = sf.read(str(r.path), dtype="float32", always_2d=True)
            rng = np.random.default_rng([seed, j])
            noisy = add_white_noise(wav.mean(axis=1), snr_db, rng)
            sf.write(str(audio_dir / r.path.name), noisy, sr, subtype="PCM_16")
        else:
            shutil.copyfile(r.path, audio_dir / r.path.name)
        paths[j] = f"audio/{r.path.name}"
    return paths


def build_av_digits_hard(source: Path, out: Path, seed: int = 0, progress: bool = True,
                         limit: int | None = None, snr_db: float = DEFAULT_SNR_DB,
                         energy: float = ENERGY_REMOVED,
                         test_speakers: list[str] | str | None = None,
                         val_speakers: list[str] | str | None = None) -> Path:
    """`build_av_digits` with ``hard=True`` (PCA-degraded images, noisy audio)."""
    return build_av_digits(source, out, seed=seed, progress=progress, limit=limit, hard=True,
                           snr_db=snr_db, energy=energy, test_speakers=test_speakers,
                           val_speakers=val_speakers)
