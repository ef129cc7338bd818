"""``hf:<name or local dir>``: any Hugging Face model through the transformers Auto classes.

- text: AutoTokenizer + AutoModel, mean pooling over the attention mask (length-sorted,
  token-budgeted batches as in `polymodal.features.encoders.text`);
- image: AutoImageProcessor + AutoModel, ``pooler_output`` when the model has one, else the
  mean of ``last_hidden_state``;
- audio: AutoFeatureExtractor + AutoModel (the encoder of encoder-decoder models), mean of
  ``last_hidden_state``, one clip at a time so padding never enters the mean;
- CLIP-like models (``get_text_features`` / ``get_image_features`` / ``get_audio_features``)
  use those projections, so text and image land in the model's shared space.

A local directory loads offline; a hub name needs the hub (or a warm local HF cache).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from polymodal.data.loaders import load_audio, load_image
from polymodal.features.encoders.base import encode_items
from polymodal.features.encoders.text import (TEXT_SORT_WINDOW, encode_token_ids, mean_pool,
                                              prepare_text, quiet_transformers)
from polymodal.core.errors import PolymodalError, UsageError

MODALITIES = ("text", "image", "audio")
FEATURE_METHOD = {"text": "get_text_features", "image": "get_image_features",
                  "audio": "get_audio_features"}


def _offline() -> bool:
    try:
        from huggingface_hub import constants
    except ImportError:
        return True
    return bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint accepts a TCP connection (fails fast with no network,
    instead of the hub client's minutes of retries)."""
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        url = urlparse(constants.ENDPOINT)
        with socket.create_connection((url.hostname or "huggingface.co",
                                       url.port or (443 if url.scheme == "https" else 80)),
                                      timeout=timeout):
            return True
    except (OSError, ImportError, ValueError):
        return False


def dir_fingerprint(path: Path) -> str:
    """Short digest of the file names, sizes and mtimes in a model directory."""
    h = hashlib.sha1()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def load_error(model: str, local: bool, error: Exception, why: str = "") -> PolymodalError:
    """A one-line `PolymodalError` for a model that cannot be loaded, with the way out."""
    reason = " ".join(str(error).split())[:300] or type(error).__name__
    if local:
        return PolymodalError(f"cannot load Hugging Face model from directory {model}: {reason}")
    why = f", {why}," if why else ""
    return PolymodalError(
        f"cannot load Hugging Face model '{model}': it is not a local directory{why} and it "
        f"could not be loaded from the hub or the local cache ({reason}); download it where "
        f"there is internet (e.g. `hf download {model} --local-dir DIR`) and use hf:DIR")


def pooled(output: Any) -> torch.Tensor:
    """A ``get_*_features`` result: a tensor, or (transformers 5) an output with pooler_output."""
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output


class HFEncoder:
    """Features from any Hugging Face model (see module doc for the pooling per modality)."""

    max_seconds = 30.0  # audio: longer clips are cut (encode says so)

    def __init__(self, model: str, modality: str, *, device: str = "cpu",
                 max_length: int | None = None, batch_size: int | None = None,
                 max_batch_tokens: int = 4096, local_files_only: bool | None = None):
        if modality not in MODALITIES:
            raise UsageError(f"hf encoder modality must be one of {', '.join(MODALITIES)}, "
                             f"not '{modality}'")
        path = Path(model).expanduser()
        self.local = path.is_dir()
        self.source = str(path.resolve()) if self.local else model
        self.name = f"hf:{model}"
        self.modality = modality
        self.device = torch.device(device)
        self.batch_size = batch_size or (TEXT_SORT_WINDOW if modality == "text" else 16)
        self.max_batch_tokens = max_batch_tokens
        why = ""
        if local_files_only is None and not self.local:  # no network: local HF cache only
            if _offline():
                why = "Hugging Face downloads are off (HF_HUB_OFFLINE)"
            elif not hub_reachable():
                why = "the Hugging Face hub cannot be reached (no network?)"
            local_files_only = bool(why)
        kwargs = {"local_files_only": True} if self.local else {
            "local_files_only": local_files_only}
        try:
            with quiet_transformers():
                self.processor = self._load_processor(kwargs)
                from transformers import AutoModel

                self.model = AutoModel.from_pretrained(self.source, **kwargs)
        except Exception as e:  # transformers / hub raise many types; all mean "cannot load"
            raise load_error(model, self.local, e, why) from None
        self.model.eval().to(self.device)
        self.projection = hasattr(self.model, FEATURE_METHOD[modality])
        if modality == "audio" and not self.projection and hasattr(self.model, "get_encoder") \
                and getattr(self.model.config, "is_encoder_decoder", False):
            self.model = self.model.get_encoder()
        self.max_length = self._max_length(max_length) if modality == "text" else None
        self.revision = (dir_fingerprint(path) if self.local
                         else getattr(self.model.config, "_commit_hash", None) or "unknown")
        self.dim = self._probe_dim()

    def _load_processor(self, kwargs: dict) -> Any:
        import transformers as tf

        cls = {"text": tf.AutoTokenizer, "image": tf.AutoImageProcessor,
               "audio": tf.AutoFeatureExtractor}[self.modality]
        return cls.from_pretrained(self.source, **kwargs)

    def _max_length(self, requested: int | None) -> int:
        limits = [requested or 512, getattr(self.processor, "model_max_length", None)]
        config = getattr(self.model.config, "text_config", None) or self.model.config
        limits.append(getattr(config, "max_position_embeddings", None))
        return int(min(x for x in limits if x))

    def _probe_dim(self) -> int:
        """Output width, from one tiny forward pass."""
        if self.modality == "text":
            ids = torch.as_tensor(self._token_ids(["hello world"]))
            with torch.inference_mode():
                return int(self._text_forward(ids, torch.ones_like(ids)).shape[1])
        if self.modality == "image":
            from PIL import Image

            probe: Any = Image.new("RGB", (32, 32), (128, 128, 128))
        else:
            probe = np.zeros(self.sample_rate, dtype=np.float32)
        self.dim = 0
        return int(self.encode_prepared([probe]).shape[1])

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with special tokens and no truncation (text models)."""
        return len(self.processor(str(text), return_attention_mask=False,
                                  return_token_type_ids=False)["input_ids"])

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.processor(list(texts), truncation=True, max_length=self.max_length,
                              return_attention_mask=False,
                              return_token_type_ids=False)["input_ids"]

    @property
    def sample_rate(self) -> int:
        return int(getattr(self.processor, "sampling_rate", 16000))

    @property
    def pooling(self) -> str:
        if self.projection:
            return "projection"
        return "pooler|mean" if self.modality == "image" else "mean"

    @property
    def id(self) -> str:
        extra = f"|maxlen={self.max_length}" if self.max_length else ""
        # a local dir is keyed by its folder name + content fingerprint, not by where it lives
        model = f"hf:local/{Path(self.source).name}" if self.local else self.name
        return f"{model}|{self.modality}|pool={self.pooling}{extra}|rev={self.revision}"

    def prepare(self, item: Any) -> Any:
        """Text -> normalised string; image path -> PIL RGB; audio path -> mono float32."""
        if self.modality == "text":
            return prepare_text(item)
        if self.modality == "image":
            return item if hasattr(item, "convert") else load_image(item)
        if isinstance(item, np.ndarray):
            return item.astype(np.float32)
        return load_audio(item, self.sample_rate, self.max_seconds)  # refuses empty audio

    def _text_forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        if self.projection:
            return pooled(self.model.get_text_features(input_ids=input_ids,
                                                      attention_mask=mask)).cpu()
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return mean_pool(hidden, mask).cpu()

    def _image_forward(self, images: Sequence[Any]) -> torch.Tensor:
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device)
        if self.projection:
            return pooled(self.model.get_image_features(pixel_values=pixels))
        out = self.model(pixel_values=pixels)
        pool = getattr(out, "pooler_output", None)
        if pool is not None:
            return pool.reshape(pool.shape[0], -1)
        hidden = out.last_hidden_state
        return hidden.mean(dim=1) if hidden.dim() == 3 else hidden.flatten(2).mean(-1)

    def _audio_forward(self, wav: np.ndarray) -> torch.Tensor:
        inputs = self.processor(wav, sampling_rate=self.sample_rate, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items() if torch.is_tensor(v)}
        if self.projection:
            return pooled(self.model.get_audio_features(**inputs))
        return self.model(**inputs).last_hidden_state.mean(dim=1)

    def encode_prepared(self, batch: Sequence[Any]) -> torch.Tensor:
        """Encode prepared items -> ``[len(batch), dim]`` float32."""
        if not len(batch):
            return torch.empty(0, self.dim)
        if self.modality == "text":
            return encode_token_ids(self._text_forward, self._token_ids(batch), self.dim,
                                    self.processor.pad_token_id or 0, self.max_batch_tokens,
                                    self.batch_size)
        with torch.inference_mode():
            if self.modality == "image":
                parts = [self._image_forward(batch[i: i + self.batch_size])
                         for i in range(0, len(batch), self.batch_size)]
            else:
                parts = [self._audio_forward(w) for w in batch]
        return torch.cat(parts).float().cpu()

    def encode(self, items: Any, batch_size: int | None = None, normalize: bool = False,
               numpy: bool = False) -> Any:
        """One item -> ``[dim]``, a list -> ``[N, dim]`` (see `encode_items`); a float32
        tensor, or an ``np.ndarray`` with ``numpy=True``."""
        return encode_items(self, items, batch_size, normalize, numpy)
