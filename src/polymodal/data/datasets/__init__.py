"""Built-in dataset builders and the bundled quickstart sample.

``build_dataset(name, source, out)`` writes ``out/manifest.jsonl`` (roles id / image / text /
audio / label / split plus extra columns; media paths relative to the manifest folder) and
``out/dataset_info.json`` (counts, splits, options). ``source`` may be the dataset's own folder
or its parent (e.g. ``../shared/data``). ``sample_path(name)`` finds the small sample bundled
with the package (``openclipart``, ``av-digits``).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from polymodal.core.errors import PolymodalError, UsageError

__all__ = ["DATASETS", "DatasetInfo", "SAMPLES", "build_dataset", "list_datasets",
           "list_samples", "sample_path"]


@dataclass(frozen=True)
class DatasetInfo:
    """A built-in dataset: what it is, where its source usually lives, how to build it."""

    name: str
    description: str
    source_subdir: str  # default folder under a data root (e.g. ../shared/data/<this>)
    builder: Callable[..., Path]
    options: dict[str, str] = field(default_factory=dict)  # option -> help


def _fsdd(*a: Any, **k: Any) -> Path:
    from polymodal.data.datasets.fsdd import build_fsdd

    return build_fsdd(*a, **k)


def _mnist(*a: Any, **k: Any) -> Path:
    from polymodal.data.datasets.mnist import build_mnist

    return build_mnist(*a, **k)


def _av(*a: Any, **k: Any) -> Path:
    from polymodal.data.datasets.av_digits import build_av_digits

    return build_av_digits(*a, **k)


def _av_hard(*a: Any, **k: Any) -> Path:
    from polymodal.data.datasets.av_digits import build_av_digits_hard

    return build_av_digits_hard(*a, **k)


def _openclipart(*a: Any, **k: Any) -> Path:
    from polymodal.data.datasets.openclipart import build_openclipart

    return build_openclipart(*a, **k)


_SPEAKERS = {"test_speakers": "comma-separated speakers for the test split (default: by seed)",
             "val_speakers": "comma-separated speakers for the val split (default: by seed)"}
DATASETS: dict[str, DatasetInfo] = {d.name: d for d in [
    DatasetInfo("fsdd", "Free Spoken Digit Dataset: spoken digits 0-9 (audio, text, label), "
                "split by speaker", "fsdd", _fsdd,
                {"limit": "at most N recordings (random, by seed)",
                 "copy": "copy the WAVs into out/audio (default: reference in place)",
                 **_SPEAKERS}),
    DatasetInfo("mnist", "MNIST test set as 28x28 PNGs (image, text, label), 80/10/10 split",
                "mnist", _mnist, {"limit": "keep the first N images"}),
    DatasetInfo("av-digits", "MNIST images paired with FSDD recordings of the same digit "
                "(image, audio, text, label), split by speaker", ".", _av,
                {"limit": "keep the first N images (one pair each; default all 10,000)",
                 "hard": "PCA-degraded images + noisy audio (MultiBench AV-MNIST recipe)",
                 "snr_db": "hard mode: signal-to-noise ratio of the audio in dB (default 0)",
                 "energy": "hard mode: share of image PCA energy removed (default 0.75)",
                 "copy_audio": "copy the clean WAVs into out/audio", **_SPEAKERS}),
    DatasetInfo("av-digits-hard", "av-digits with 75% of image PCA energy removed and audio "
                "mixed with white noise (0 dB)", ".", _av_hard,
                {"limit": "keep the first N images", "snr_db": "audio SNR in dB (default 0)",
                 "energy": "share of image PCA energy removed (default 0.75)", **_SPEAKERS}),
    DatasetInfo("openclipart", "OpenClipart drawings (image, cleaned captions, label = "
                "category), fixed held-out test split", "openclipart", _openclipart,
                {"limit": "keep the first N drawings",
                 "copy": "copy the PNGs into out/images (default: reference in place)"}),
]}
SAMPLES = ("openclipart", "av-digits")


def list_datasets() -> list[tuple[str, str]]:
    """(name, description) of every built-in dataset."""
    return [(d.name, d.description) for d in DATASETS.values()]


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

    Options per dataset are listed in ``DATASETS[name].options`` (e.g. ``limit``, ``hard``,
    ``snr_db``). Raises `UsageError` for an unknown name or option and `PolymodalError` when
    the source folder is missing or does not look like the dataset."""
    info = DATASETS.get(name)
    if info is None:
        raise UsageError(f"unknown dataset '{name}'; built-in datasets: {', '.join(DATASETS)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"seed must be an integer, got {seed!r}")
    bad = [k for k in options if k not in info.options]
    if bad:
        raise UsageError(f"unknown option '{bad[0]}' for dataset '{name}'; options: "
                         f"{', '.join(info.options) or '(none)'}")
    defaults = _defaults(name)
    opts = {k: _coerce(k, v, defaults.get(k)) for k, v in options.items() if v is not None}
    return info.builder(Path(source), Path(out), seed=seed, progress=progress, **opts)


def _defaults(name: str) -> dict[str, Any]:
    from polymodal.data.datasets import av_digits, fsdd, mnist, openclipart

    fn = {"fsdd": fsdd.build_fsdd, "mnist": mnist.build_mnist,
          "av-digits": av_digits.build_av_digits, "av-digits-hard": av_digits.build_av_digits_hard,
          "openclipart": openclipart.build_openclipart}[name]
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


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
