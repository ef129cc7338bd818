"""The encoder table: name -> lazily imported encoder class (torch-free to import).

``modality`` / ``dim`` metadata repeat the classes' attributes so that names can be checked
without importing torch (tests/core/test_registry.py keeps them equal).

A name is an entry (``minilm``) or ``scheme:argument`` for an entry that takes one
(``hf:<model name or local dir>``); ``name.partition(":")`` splits them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from polymodal.core.errors import UsageError
from polymodal.core.registry import Entry, Registry

if TYPE_CHECKING:
    from polymodal.features.encoders.base import Encoder

_PKG = "polymodal.features.encoders"
MODALITIES = ("text", "image", "audio", "video")

ENCODERS = Registry("encoder", [
    Entry("minilm", f"{_PKG}.text:MiniLMEncoder",
          "all-MiniLM-L6-v2 sentence embeddings, mean-pooled, L2-normalised (offline)",
          {"modality": "text", "dim": 384}),
    Entry("efficientnet-lite0", f"{_PKG}.image:EfficientNetLite0Encoder",
          "EfficientNet-Lite0 ImageNet features, global average pool (offline)",
          {"modality": "image", "dim": 1280}),
    Entry("logmel", f"{_PKG}.audio:LogMelEncoder",
          "mean and std over time of 64 log-mel bands and their deltas; no learned weights",
          {"modality": "audio", "dim": 256}),
    Entry("whisper-tiny", f"{_PKG}.whisper:WhisperEncoder",
          "Whisper tiny.en encoder states, mean-pooled over the real audio (offline)",
          {"modality": "audio", "dim": 384}),
    Entry("hf", f"{_PKG}.hf:HFEncoder",
          "any Hugging Face model through the transformers Auto classes (mean pooling, or "
          "the CLIP-style projection)",
          {"modality": "any", "scheme": "hf:<model name or local dir>"}),
    Entry("frames", f"{_PKG}.video:FramesEncoder",
          "video frames (1 per second, or scene changes; bounded) through an image encoder, "
          "mean-pooled; per-frame vectors and times kept",
          {"modality": "video", "scheme": "frames:<image encoder>"}),
    Entry("asr", f"{_PKG}.asr:ASREncoder",
          "speech as a bridge: the Whisper tiny.en transcript of the clip through a text "
          "encoder (audio vectors in that text space; offline)",
          {"modality": "audio", "scheme": "asr:<text encoder>"}),
    Entry("audio", f"{_PKG}.video:TrackAudioEncoder",
          "a video's audio track through an audio encoder",
          {"modality": "video", "scheme": "audio:<audio encoder>"}),
    Entry("concat", f"{_PKG}.concat:ConcatEncoder",
          "one modality through several encoders, each vector unit-length, side by side "
          "(e.g. concat:whisper-tiny+asr:minilm: the voice and what it says)",
          {"modality": "any", "scheme": "concat:<encoder>+<encoder>[+…]", "parts": True}),
    Entry("pixels", f"{_PKG}.pixels:PixelsEncoder",
          "the image's own pixels, resized to S x S (default 75), flattened [3, S, S] in [0, 1]; "
          "no weights (for fusions that train a CNN: film, relation)",
          {"modality": "image", "scheme": "pixels[:<side>]", "optional_arg": True}),
], fixed=("model", "modality"))

DEFAULT_ENCODERS: Mapping[str, str] = {"text": "minilm", "image": "efficientnet-lite0",
                                       "audio": "logmel", "video": "frames:efficientnet-lite0"}


def parse_encoder_name(name: str) -> tuple[Entry, str]:
    """``(entry, argument)`` for ``name`` (argument ``""`` unless the entry takes one, as
    ``hf:<model>`` does); a one-line `UsageError` otherwise."""
    base, sep, arg = str(name).partition(":")
    entry = ENCODERS.get(base)
    scheme = entry.metadata.get("scheme")
    if scheme and not arg and not entry.metadata.get("optional_arg"):
        raise UsageError(f"encoder '{name}' needs an argument: {scheme}")
    if sep and not scheme:
        raise UsageError(f"encoder '{base}' takes no ':<argument>' (got '{name}')")
    return entry, arg


def check_encoder(name: str, modality: str | None = None) -> tuple[Entry, str]:
    """`parse_encoder_name` plus a check that the encoder can encode ``modality`` (required
    for encoders of any modality, such as ``hf:``)."""
    entry, arg = parse_encoder_name(name)
    if modality is not None and modality not in MODALITIES:
        raise UsageError(f"unknown modality '{modality}' for encoder '{name}'; valid: "
                         f"{', '.join(MODALITIES)}")
    kind = entry.metadata["modality"]
    if kind == "any":
        if modality is None:
            raise UsageError(f"encoder '{name}' needs a modality (e.g. --encoder text={name})")
    elif modality is not None and modality != kind:
        raise UsageError(f"encoder '{name}' is a {kind} encoder, not {modality}")
    if entry.metadata.get("parts"):  # concat:a+b — every part must encode this modality
        from polymodal.features.encoders.concat import split_parts

        for part in split_parts(arg):
            check_encoder(part, modality)
    return entry, arg


def check_encoder_map(encoders: Mapping[str, str]) -> Mapping[str, str]:
    """Check a ``{modality: encoder name}`` setting (as in the task configs); returns it."""
    for modality, name in encoders.items():
        check_encoder(name, modality)
    return encoders


def build_encoder(name: str, modality: str | None = None, backend: str = "auto",
                  precision: str = "auto", cache_dir: str | None = None, **kwargs: Any
                  ) -> Encoder:
    """Build an encoder by name (``minilm``, ``efficientnet-lite0``, ``logmel``,
    ``whisper-tiny``), or ``hf:<model>`` for any Hugging Face model (``modality`` required:
    text, image or audio). Unknown names and options raise `UsageError`.

    ``backend`` / ``precision`` (`polymodal.features.encoders.backends`) go to encoders that
    declare ``backends``; an encoder without a model (``backends = {}``, e.g. ``logmel``)
    ignores them; one that declares nothing runs torch fp32 only (anything else is a one-line
    `UsageError` naming it). ``cache_dir`` (where exported model files go) reaches encoders
    that take it."""
    from polymodal.features.encoders.backends import resolve_backend

    entry, arg = check_encoder(name, modality)
    cls = ENCODERS.load(entry.name)
    declared = getattr(cls, "backends", None)
    if declared:
        kwargs.update(backend=backend, precision=precision)
        if cache_dir is not None and "cache_dir" in ENCODERS.options(entry.name):
            kwargs.setdefault("cache_dir", cache_dir)
    elif declared is None:  # checked here, before any model is loaded
        resolve_backend(name, {"torch": ("fp32",)}, ("torch", "fp32"), backend, precision)
    else:
        resolve_backend(name, {}, None, backend, precision)  # valid names, else ignored
    if entry.metadata["modality"] == "any":
        return ENCODERS.build(entry.name, arg, modality, **kwargs)
    if arg:  # a scheme entry of one modality (frames:<image encoder>)
        return ENCODERS.build(entry.name, arg, **kwargs)
    return ENCODERS.build(entry.name, **kwargs)
