"""The Encoder protocol and what every encoder shares.

An encoder turns items of one modality (image paths, audio paths or texts) into vectors.
Decoding is separate from encoding so that a batch job can skip one bad file and go on:
``prepare(item)`` decodes one item (raises `DecodeError` / `PolymodalError` on bad input),
``encode_prepared(list)`` runs the model on a batch of prepared items, and
``encode(items, batch_size=…, normalize=False, numpy=False)`` does both (`encode_items`): one
item (a str, a path) gives one vector ``[dim]``, a list gives ``[N, dim]``.

`rebuild_encoder` rebuilds the encoder a fitted run's features were made with (from the stored
name) and checks that it gives the stored id again; `warm_up` encodes a tiny synthetic input.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from polymodal.core.errors import PolymodalError

DEFAULT_BATCH = 32


@runtime_checkable
class Encoder(Protocol):
    """What every encoder provides.

    ``id`` names the encoder *and* every preprocessing setting that changes its output (it is
    part of the feature-cache key); ``dim`` is the output width.
    """

    name: str
    modality: str
    dim: int

    @property
    def id(self) -> str: ...

    def prepare(self, item: Any) -> Any:
        """Decode one item (a path for image/audio, a string for text)."""
        ...

    def encode_prepared(self, batch: Sequence[Any]) -> torch.Tensor:
        """Encode prepared items -> float tensor ``[len(batch), dim]``."""
        ...

    def encode(self, items: Any, batch_size: int | None = None, normalize: bool = False,
               numpy: bool = False) -> torch.Tensor | np.ndarray:
        """`encode_items`: one item -> ``[dim]``, a list -> ``[N, dim]``."""
        ...


def is_single(items: Any) -> bool:
    """Whether ``items`` is one item (a str, a path, an array or an image) rather than a list."""
    return isinstance(items, (str, bytes, os.PathLike, np.ndarray)) or hasattr(items, "convert")


def encode_items(encoder: Encoder, items: Any, batch_size: int | None = None,
                 normalize: bool = False, numpy: bool = False) -> torch.Tensor | np.ndarray:
    """Shared implementation of ``Encoder.encode`` (composition, not inheritance).

    ``items``: one item (a text, an image / audio path) -> a vector ``[dim]``; a list ->
    ``[N, dim]``. Items are decoded and encoded ``batch_size`` at a time (default: the
    encoder's ``batch_size``, else 32), so a long list never holds every decoded file at once.
    ``normalize`` scales each vector to unit L2 length; ``numpy`` returns a float32
    ``np.ndarray`` instead of a float32 torch tensor. A bad item raises (`DecodeError` names
    the file)."""
    single = is_single(items)
    batch = [items] if single else list(items)
    size = int(batch_size or getattr(encoder, "batch_size", None) or DEFAULT_BATCH)
    if size < 1:
        raise PolymodalError(f"batch_size must be at least 1, got {batch_size}")
    if not batch:
        out = torch.empty(0, int(encoder.dim))
    else:
        parts = [encoder.encode_prepared([encoder.prepare(i) for i in batch[s:s + size]]).float()
                 for s in range(0, len(batch), size)]
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
    if normalize:
        out = torch.nn.functional.normalize(out, dim=-1)
    if single:
        out = out[0]
    return out.numpy() if numpy else out


def rebuild_encoder(name: str, modality: str, expected_id: str | None = None,
                    where: str = "this run", fallback: str | None = None,
                    cache_dir: str | None = None) -> Encoder:
    """The encoder a run's ``modality`` features were made with: built from its stored
    ``name`` (or ``fallback`` when that name cannot be rebuilt, e.g. a format-1 id of a local
    Hugging Face folder) with the backend ``expected_id`` names (torch fp32 for an id from
    before backends, whose vectors those are) and checked to give ``expected_id`` again, so
    new inputs are never encoded differently from the training features. One-line
    `PolymodalError` otherwise."""
    from polymodal.features.encoders.backends import (INT8_RECIPE_ID, split_backend_id,
                                                      without_int8_recipe)
    from polymodal.features.encoders.registry import build_encoder

    scheme, _, arg = (name or "").partition(":")
    usable = bool(name) and not (scheme == "hf" and arg.partition("/")[0] == "local")
    chosen = name if usable else fallback
    if not chosen:
        raise PolymodalError(f"{where}: its {modality} features were made by encoder "
                             f"'{expected_id or name}', which cannot be rebuilt here")
    base_id, resolved = split_backend_id(expected_id or "")
    backend, precision = resolved or (legacy_backend(chosen) if expected_id else ("auto", "auto"))
    enc = build_encoder(chosen, modality=modality, backend=backend, precision=precision,
                        cache_dir=cache_dir, **compat_options(chosen, expected_id))
    got, want = (enc.id, expected_id) if resolved else (split_backend_id(enc.id)[0], base_id)
    if resolved and resolved[1] == "int8" and INT8_RECIPE_ID not in expected_id:
        got = without_int8_recipe(got)  # an int8 id from before its recipe was named
    if expected_id and expected_id != chosen and got != want:
        raise PolymodalError(f"{where}: its {modality} features were made by encoder "
                             f"'{expected_id}', but '{chosen}' now gives '{enc.id}'; re-fit the "
                             f"run to use it with this polymodal")
    return enc


def compat_options(name: str, expected_id: str | None) -> dict[str, Any]:
    """Options that rebuild encoder ``name`` as ``expected_id`` (from an older polymodal)
    names it: an image id without ``|jpeg=`` decoded every JPEG in full (``jpeg_draft=False``,
    `polymodal.data.image_input`), so a run fitted before JPEG drafting keeps its encoding."""
    if not expected_id or "|jpeg=" in expected_id:
        return {}
    return full_decode_options(name)


def full_decode_options(name: str) -> dict[str, Any]:
    """``{"jpeg_draft": False}`` for an encoder that takes that option, else ``{}``."""
    from polymodal.features.encoders.registry import ENCODERS, parse_encoder_name

    entry = parse_encoder_name(name)[0].name
    return {"jpeg_draft": False} if "jpeg_draft" in ENCODERS.options(entry) else {}


def legacy_backend(name: str) -> tuple[str, str]:
    """The backend an id of ``name`` from before backends (no ``|backend=`` suffix) was made
    with: torch fp32 where the encoder has it, else its default ("auto" when it has no model)."""
    from polymodal.features.encoders.registry import ENCODERS, parse_encoder_name

    cls = ENCODERS.load(parse_encoder_name(name)[0].name)
    declared = getattr(cls, "backends", None) or {}
    if "fp32" in declared.get("torch", ()):
        return ("torch", "fp32")
    return tuple(cls.default_backend) if declared else ("auto", "auto")


def warm_up(encoder: Encoder) -> None:
    """Encode one tiny synthetic input so that the first real call does not pay for lazy
    initialisation (e.g. the audio front end's first call takes seconds). Errors are ignored:
    warming up is only an optimisation."""
    import tempfile
    from pathlib import Path

    try:
        if encoder.modality == "text":
            encoder.encode(["warm up"])
            return
        with tempfile.TemporaryDirectory(prefix="polymodal-warm-") as d:
            if encoder.modality == "image":
                from PIL import Image

                path = Path(d) / "warm.png"
                Image.new("RGB", (32, 32), "white").save(path)
            else:
                import soundfile as sf

                path = Path(d) / "warm.wav"
                # a 1 s tone (silence would be trimmed away) at 8 kHz, so resampling is warmed too
                t = np.arange(8000, dtype=np.float32) / 8000
                sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), 8000)
            encoder.encode([str(path)])
    except Exception:  # noqa: BLE001 - an optimisation only
        pass


EncoderBuilder = Callable[..., Encoder]
