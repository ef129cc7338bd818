"""Built-in dataset builders and the bundled quickstart sample.

``build_dataset(name, source, out)`` writes ``out/manifest.jsonl`` (roles id / image / text /
audio / label / split plus extra columns; media paths relative to the manifest folder) and
``out/dataset_info.json`` (counts, splits, options). ``source`` may be the dataset's own folder
or its parent (e.g. ``../shared/data``). ``sample_path(name)`` finds the small sample bundled
with the package (``openclipart``, ``av-digits``).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from polymodal.core.errors import PolymodalError, UsageError
from polymodal.core.registry import Entry, Registry

__all__ = ["DATASETS", "SAMPLES", "build_dataset", "list_datasets", "list_samples",
           "sample_path"]

_P = "polymodal.data.datasets"
_SPEAKERS = {"test_speakers": "comma-separated speakers for the test split (default: by seed)",
             "val_speakers": "comma-separated speakers for the val split (default: by seed)"}

# metadata: "source" = the dataset's usual folder under a data root (../shared/data/<this>);
# "options" = builder option -> help (the builder's signature is what is checked)
DATASETS = Registry("dataset", [
    Entry("fsdd", f"{_P}.fsdd:build_fsdd", "Free Spoken Digit Dataset: spoken digits 0-9 "
          "(audio, text, label), split by speaker",
          {"source": "fsdd", "options": {
              "limit": "at most N recordings (random, by seed)",
              "copy": "copy the WAVs into out/audio (default: reference in place)",
              **_SPEAKERS}}),
    Entry("mnist", f"{_P}.mnist:build_mnist", "MNIST test set as 28x28 PNGs (image, text, "
          "label), 80/10/10 split",
          {"source": "mnist", "options": {"limit": "keep the first N images"}}),
    Entry("av-digits", f"{_P}.av_digits:build_av_digits", "MNIST images paired with FSDD "
          "recordings of the same digit (image, audio, text, label), split by speaker",
          {"source": ".", "options": {
              "limit": "keep the first N images (one pair each; default all 10,000)",
              "hard": "PCA-degraded images + noisy audio (MultiBench AV-MNIST recipe)",
              "snr_db": "hard mode: signal-to-noise ratio of the audio in dB (default 0)",
              "energy": "hard mode: share of image PCA energy removed (default 0.75)",
              "copy_audio": "copy the clean WAVs into out/audio", **_SPEAKERS}}),
    Entry("av-digits-hard", f"{_P}.av_digits:build_av_digits_hard", "av-digits with 75% of "
          "image PCA energy removed and audio mixed with white noise (0 dB)",
          {"source": ".", "options": {
              "limit": "keep the first N images", "snr_db": "audio SNR in dB (default 0)",
              "energy": "share of image PCA energy removed (default 0.75)", **_SPEAKERS}}),
    Entry("av-digits-video", f"{_P}.av_digits_video:build_av_digits_video", "clips showing "
          "3-6 MNIST digits while FSDD recordings of them play (video, text, label, timing), "
          "split by speaker",
          {"source": ".", "options": {
              "limit": "number of clips (default 500)",
              "size": "frame side in px (default 64)", "fps": "frames per second (default 10)",
              "min_digits": "fewest digits per clip (default 3)",
              "max_digits": "most digits per clip (default 6)",
              "min_slot": "shortest time one digit is shown, s (default 1.0)",
              "format": "webm (VP8 + Opus, default) or mp4 (H.264 + AAC)"}}),
    Entry("openclipart", f"{_P}.openclipart:build_openclipart", "OpenClipart drawings (image, "
          "cleaned captions, label = category), fixed held-out test split",
          {"source": "openclipart", "options": {
              "limit": "keep the first N drawings",
              "copy": "copy the PNGs into out/images (default: reference in place)"}}),
    Entry("openclipart-spoken", f"{_P}.openclipart_spoken:build_openclipart_spoken",
          "OpenClipart drawings + captions + the captions spoken offline by several voices / "
          "rates (image, text, audio; label = category), split as openclipart",
          {"source": "openclipart", "options": {
              "limit": "keep the first N drawings",
              "voices": "comma list of voices (`polymodal speak --list-voices`; default "
                        "piper:en_US-joe-medium,espeak:en-us+Diogo,espeak:en-gb+Hugo)",
              "rates": "comma list of speed factors (default 0.9,1.0,1.2)"}}),
    Entry("sort-of-clevr", f"{_P}.sort_of_clevr:build_sort_of_clevr", "Sort-of-CLEVR "
          "(Relation Networks benchmark): rendered 75x75 scenes of 6 coloured circles / "
          "squares with relational and non-relational questions (image, text, label), "
          "split by image; generated, no source needed",
          {"source": None, "options": {
              "n_images": "number of scenes (default 10000)",
              "questions": "questions per image, half relational (default 20, at most 36)"}}),
], fixed=("source", "out", "seed", "progress"))
SAMPLES = ("openclipart", "av-digits")


def list_datasets() -> list[tuple[str, str]]:
    """(name, description) of every built-in dataset."""
    return [(name, desc) for name, desc, _ in DATASETS.rows()]


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Option values from the CLI arrive as str / int / float / bool: match the default."""
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, (bool, int)) and value in (0, 1):
            return bool(value)
        raise UsageError(f"option {name} must be true or false, got {value!r}")
    if isinstance(default, float) and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f"option {name} must be a number, got {value!r}") from None
    return value


def build_dataset(name: str, source: Path, out: Path, seed: int = 0, progress: bool = True,
                  **options: Any) -> Path:
    """Build dataset ``name`` from ``source`` into ``out``; returns the manifest path.

    Options per dataset are the builder's keyword parameters (``polymodal list datasets
    --options``; help in ``DATASETS[name].metadata["options"]``), e.g. ``limit``, ``hard``,
    ``snr_db``. Raises `UsageError` for an unknown name or option and `PolymodalError` when
    the source folder is missing or does not look like the dataset."""
    DATASETS.get(name)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"seed must be an integer, got {seed!r}")
    DATASETS.check_options(name, options)
    defaults = {k: p.default for k, p in inspect.signature(DATASETS.load(name)).parameters.items()
                if p.default is not inspect.Parameter.empty}
    opts = {k: _coerce(k, v, defaults.get(k)) for k, v in options.items() if v is not None}
    return DATASETS.build(name, Path(source), Path(out), seed=seed, progress=progress, **opts)


def list_samples() -> list[str]:
    """Names of the samples bundled with the package."""
    return list(SAMPLES)


def sample_path(name: str) -> Path:
    """Manifest path of a bundled sample (``openclipart`` or ``av-digits``); works after
    install (the files ship as package data under ``polymodal/sample/``)."""
    from importlib.resources import files

    if name not in SAMPLES:
        raise UsageError(f"unknown sample '{name}'; bundled samples: {', '.join(SAMPLES)}")
    path = Path(str(files("polymodal") / "sample" / name / "manifest.jsonl"))
    if not path.is_file():
        raise PolymodalError(f"bundled sample '{name}' is missing from this install ({path}); "
                             "reinstall polymodal or run scripts/make_sample.py")
    return path
