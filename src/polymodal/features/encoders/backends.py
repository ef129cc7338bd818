"""Inference backends and precisions of the encoders (issue 10: encoders at this CPU's limit).

Every encoder with a model declares what it can run as a class attribute::

    backends = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8")}
    default_backend = ("onnx", "int8")      # chosen by measurement (docs/RESULTS.md §1)

and takes ``backend="auto", precision="auto"`` in its constructor; `resolve_backend` turns the
request into one supported pair (``auto``: the encoder's measured default) or a one-line
`UsageError`. The encoder's ``id`` ends in ``|backend=<b>-<p>`` so the feature cache never mixes
vectors of two backends. Encoders without a model (``logmel``) declare ``backends = {}``: the
setting does not apply to them and their id is unchanged.

``torch-bf16`` is accepted as a spelling of backend ``torch`` with precision ``bf16``.
Exported / quantized model files are built once per encoder id under `artifact_dir` (the feature
cache's ``models/`` folder), written atomically, so a second run loads them.

The user setting (``--backend`` / ``--precision``, `DataConfig.backend` / ``precision``) is one
value for every encoder (``onnx``) or per modality (``text=onnx,image=torch``, or both:
``onnx,audio=torch``); `setting_for` picks one modality's value. A fitted run rebuilds its
encoders with the backend its stored encoder id names (`split_backend_id`), never "auto" again.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Mapping, Sequence

from polymodal.core.errors import UsageError

# "ctranslate2": the native runtime of the bundled Whisper (whisper-tiny, transcription)
BACKENDS = ("auto", "torch", "torch-bf16", "onnx", "openvino", "ctranslate2")
PRECISIONS = ("auto", "fp32", "bf16", "int8")


def resolve_backend(encoder: str, backends: Mapping[str, Sequence[str]],
                    default: tuple[str, str] | None, backend: str = "auto",
                    precision: str = "auto") -> tuple[str, str] | None:
    """``(backend, precision)`` an encoder named ``encoder`` will run, or None when it has no
    model (``backends`` empty). Raises a one-line `UsageError` for an unknown or unsupported
    request, naming what the encoder supports."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}'; valid: {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; valid: {', '.join(PRECISIONS)}")
    if backend == "torch-bf16":
        if precision not in ("auto", "bf16"):
            raise UsageError(f"backend 'torch-bf16' means precision bf16, not '{precision}'")
        backend, precision = "torch", "bf16"
    if not backends:
        return None
    if default is None:
        raise UsageError(f"encoder '{encoder}' declares backends but no default")
    if backend == "auto":
        backend = default[0] if precision in ("auto", default[1]) else next(
            (b for b, ps in backends.items() if precision in ps), default[0])
    if backend not in backends:
        raise UsageError(f"encoder '{encoder}' has no backend '{backend}'; it runs on "
                         f"{_supported(backends)}")
    if precision == "auto":
        precision = default[1] if backend == default[0] else backends[backend][0]
    if precision not in backends[backend]:
        raise UsageError(f"encoder '{encoder}' cannot run '{backend}' in {precision}; it runs "
                         f"on {_supported(backends)}")
    return backend, precision


def _supported(backends: Mapping[str, Sequence[str]]) -> str:
    return ", ".join(f"{b} ({'/'.join(ps)})" for b, ps in backends.items())


def backend_id(resolved: tuple[str, str] | None) -> str:
    """The suffix an encoder's id carries for its backend ("" for encoders without a model)."""
    return "" if resolved is None else f"|backend={resolved[0]}-{resolved[1]}"


INT8_RECIPE_ID = "|int8="  # then u8u8 or u8s8: weights uint8 or int8, activations uint8


def int8_recipe_id(unsigned_weights: bool) -> str:
    """The id component naming an ONNX Runtime int8 model's recipe, ``|int8=u8u8`` (uint8
    weights: x86 CPUs without VNNI / AMX, `runtimes.int8_unsigned_weights`) or ``|int8=u8s8``;
    it goes before the backend suffix, which stays last (`split_backend_id`). The two recipes
    give different vectors, so the feature cache keeps them apart."""
    return f"{INT8_RECIPE_ID}{'u8u8' if unsigned_weights else 'u8s8'}"


def without_int8_recipe(encoder_id: str) -> str:
    """``encoder_id`` less its int8 recipe component: ids from before the recipe was named."""
    import re

    return re.sub(r"\|int8=u8[us]8", "", str(encoder_id))


def split_backend_id(encoder_id: str) -> tuple[str, tuple[str, str] | None]:
    """``(id without the backend suffix, (backend, precision) or None)`` of an encoder id."""
    base, sep, tail = str(encoder_id).rpartition("|backend=")
    if not sep or "|" in tail or "-" not in tail:
        return str(encoder_id), None
    b, _, p = tail.rpartition("-")
    return base, (b, p)


def parse_setting(value: str | None, kind: str = "backend") -> dict[str, str]:
    """``"onnx"`` -> ``{"": "onnx"}``; ``"onnx,text=torch"`` -> ``{"": "onnx", "text": "torch"}``
    (``""``: every other modality). One-line `UsageError` for an unknown value or modality."""
    from polymodal.features.encoders.registry import MODALITIES

    valid = BACKENDS if kind == "backend" else PRECISIONS
    out: dict[str, str] = {}
    for part in [x.strip() for x in str(value or "auto").split(",") if x.strip()]:
        mod, sep, val = part.rpartition("=")
        mod, val = mod.strip(), val.strip()
        if sep and mod not in MODALITIES:
            raise UsageError(f"--{kind} {part}: unknown modality '{mod}'; valid: "
                             f"{', '.join(MODALITIES)}")
        if val not in valid:
            raise UsageError(f"--{kind} {part}: unknown {kind} '{val}'; valid: "
                             f"{', '.join(valid)}")
        if mod in out:
            raise UsageError(f"--{kind} {value}: {'modality ' + mod if mod else 'the default'} "
                             "is given twice")
        out[mod] = val
    return out


def check_setting(kind: str):
    """A pydantic ``AfterValidator`` for a ``backend`` / ``precision`` config field."""
    def check(value: str) -> str:
        parse_setting(value, kind)
        return value
    return check


def setting_for(value: str | None, modality: str, kind: str = "backend") -> str:
    """The ``kind`` one modality gets from a setting (``auto`` when it names neither)."""
    spec = parse_setting(value, kind)
    return spec.get(modality, spec.get("", "auto"))


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags (the first ``flags`` line of ``/proc/cpuinfo``; empty where it
    has none), read once; None where the file cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        return None
    return frozenset()


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 matrix units (AMX-BF16 or AVX512-BF16): there bf16 matmuls
    run ~5x faster than fp32 (docs/RESULTS.md), elsewhere they are emulated and slower."""
    return bool({"amx_bf16", "avx512_bf16"} & (cpu_flags() or frozenset()))


def artifact_dir(cache_dir: str | Path | None = None) -> Path:
    """Folder for exported / quantized model files (``<feature cache>/models``)."""
    if cache_dir is None:
        from polymodal.features.cache.store import default_cache_dir

        cache_dir = default_cache_dir()
    return Path(cache_dir) / "models"
