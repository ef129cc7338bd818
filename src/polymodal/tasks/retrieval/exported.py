"""An exported retrieval run (``polymodal export RUN --format onnx --out DIR``) without torch:
onnxruntime + tokenizers + numpy + Pillow only. ``polymodal.load(DIR)`` returns an
`ExportedRetriever` with the same ``search`` / ``embed`` as the torch `Retriever`.

Folder layout (written by `polymodal.tasks.retrieval.export`)::

    export.json          {"format": "polymodal-export", "version", "task", "query", "target",
                          "dim", "encoders": {modality: {name, id, file, dim, int8, …}},
                          "heads": {"query": file, "target": file}, "count", "check"}
    encoder_<m>.onnx     the run's encoder of modality m (text: + mean pooling, un-normalised)
    tokenizer.json       text: the model folder's fast tokenizer (padding off, max length set)
    head_query.onnx      features -> mean-centering + head + L2 normalise (AlignModel.embed)
    head_target.onnx
    vectors.npy          float32 [count, dim] the index's vectors (unit length)
    items.json           per vector: {"id", "row_id", "path", "text"} (what a hit shows)

This module imports nothing that imports torch (checked by tests/tasks/test_export.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from polymodal.core.errors import DecodeError, PolymodalError, UsageError
from polymodal.features.encoders.wordpiece import load_tokenizer
from polymodal.tasks.retrieval.queries import check_k, check_query

FORMAT = "polymodal-export"
VERSION = 1
EXPORT_FILE = "export.json"
IMAGE_MEAN, IMAGE_STD = 127.0, 128.0  # efficientnet-lite0 (features/encoders/image.py)


def is_export(path: str | Path) -> bool:
    return (Path(path) / EXPORT_FILE).is_file()


def _session(path: Path) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise PolymodalError("an exported run needs the package onnxruntime "
                             "(pip install 'polymodal[fast]')") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - a damaged file is one line
        raise PolymodalError(f"cannot load {path}: {str(e).splitlines()[0]}") from None


def _normalize_text(text: str) -> str:
    from polymodal.data.loaders import normalize_text

    return normalize_text(text)


def image_input(paths: Sequence[str], side: int, jpeg_draft: bool = False) -> np.ndarray:
    """Images -> ``float32 [B, 3, side, side]``: the run's `SquareInput` (RGB, EXIF, white
    behind transparency, bilinear resize of the whole image; JPEG drafting when the encoder id
    names it), then ``(x - 127) / 128``."""
    from polymodal.data.image_input import SquareInput

    prep = SquareInput(int(side), "bilinear", jpeg_draft)
    arrays = []
    for p in paths:
        try:
            arrays.append(prep(p))
        except DecodeError as e:
            raise PolymodalError(f"query image {e.path}: {e.reason}") from None
    x = np.stack(arrays).astype(np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray((x - IMAGE_MEAN) / IMAGE_STD)


class ExportedEncoder:
    """One exported encoder: ``encode(items) -> float32 [N, dim]`` (the run's features)."""

    def __init__(self, root: Path, modality: str, spec: dict):
        self.modality, self.spec = modality, spec
        self.session = _session(root / spec["file"])
        try:
            self.tokenizer = (load_tokenizer(root / spec["tokenizer"], int(spec["max_length"]))
                              if modality == "text" else None)
        except OSError as e:
            raise PolymodalError(f"cannot load the exported tokenizer: {e}") from None

    def encode(self, items: Sequence[str]) -> np.ndarray:
        if self.modality == "image":
            x = image_input(items, int(self.spec["size"]), "|jpeg=" in self.spec["id"])
            return self.session.run(None, {"pixels": x})[0]
        encs = self.tokenizer.encode_batch([_normalize_text(t) for t in items])
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), np.int64)
        mask = np.zeros((len(encs), width), np.int64)
        for i, e in enumerate(encs):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1
        pooled = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


class ExportedRetriever:
    """An exported retrieval run: ``search(queries, k)``, ``embed(items)``, torch-free."""

    def __init__(self, root: Path, doc: dict):
        self.root, self.doc = root, doc
        self.query, self.target = doc["query"], doc["target"]
        self.encoders = {m: ExportedEncoder(root, m, s) for m, s in doc["encoders"].items()}
        self.heads = {s: _session(root / f) for s, f in doc["heads"].items()}
        self.vectors = np.load(root / "vectors.npy", allow_pickle=False).astype(np.float32)
        self.items = json.loads((root / "items.json").read_text(encoding="utf-8"))
        if len(self.items) != len(self.vectors):
            raise PolymodalError(f"{root}: items.json and vectors.npy disagree "
                                 f"({len(self.items)} vs {len(self.vectors)} rows)")

    @classmethod
    def load(cls, root: str | Path) -> "ExportedRetriever":
        root = Path(root)
        try:
            doc = json.loads((root / EXPORT_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PolymodalError(f"{root}: not an exported run (no {EXPORT_FILE})") from None
        except (OSError, ValueError) as e:
            raise PolymodalError(f"{root / EXPORT_FILE}: corrupt ({e})") from None
        if doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise PolymodalError(f"{root / EXPORT_FILE}: not a {FORMAT} version {VERSION} file")
        if doc.get("task") != "retrieval":
            raise PolymodalError(f"{root}: exported '{doc.get('task')}' runs are not supported")
        return cls(root, doc)

    @property
    def modalities(self) -> list[str]:
        return list(dict.fromkeys((self.query, self.target)))

    def __len__(self) -> int:
        return len(self.vectors)

    def check(self, query: Any, modality: str | None = None) -> str:
        return check_query(query, modality, self.query, self.target)

    def check_k(self, k: int) -> None:
        check_k(k, len(self))

    def embed(self, items: Any, modality: str | None = None) -> np.ndarray:
        """Shared-space vectors: one item -> ``[d]``, a list -> ``[N, d]``."""
        single = isinstance(items, (str, os.PathLike))
        batch = [items] if single else list(items)
        if not batch:
            raise UsageError("no queries given")
        modality = [self.check(q, modality) for q in batch][0]
        x = self.encoders[modality].encode([str(q) for q in batch]).astype(np.float32)
        side = "query" if modality == self.query else "target"
        v = self.heads[side].run(None, {"features": x})[0]
        return v[0] if single else v

    def search(self, queries: Any, k: int = 5, modality: str | None = None) -> list:
        """Top-``k`` hits (dicts: rank, id, score, row_id, path, text); a list of queries ->
        one list per query."""
        self.check_k(k)
        single = isinstance(queries, (str, os.PathLike))
        batch = [queries] if single else list(queries)
        if not batch:
            return []
        scores = self.embed(batch, modality) @ self.vectors.T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        hits = [[dict(self.items[j], rank=r, score=float(scores[q, j]))
                 for r, j in enumerate(top[q], 1)] for q in range(len(batch))]
        return hits[0] if single else hits
