"""Tiny real-but-cheap encoders shared by the pipeline tests (no pretrained model to load).

Importable from any test as ``from encoders_testdata import WordEncoder``: ``tests/`` is on
``sys.path`` through the root ``tests/conftest.py``.
"""
from __future__ import annotations

import torch

from polymodal.features.encoders.base import encode_items


class WordEncoder:
    """Hashed bag of words (16-d) over texts; counts what it encodes (``encoded`` items in
    ``batches``) and, with ``fail_after_batches``, dies after that many batches."""

    name, modality, dim, batch_size = "words", "text", 16, 8

    def __init__(self, fail_after_batches: int | None = None):
        self.encoded = 0
        self.batches = 0
        self.fail_after = fail_after_batches

    @property
    def id(self) -> str:
        return "words|16"

    def prepare(self, item):
        return item

    def encode_prepared(self, batch):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise RuntimeError("encoder died")
        self.batches += 1
        self.encoded += len(batch)
        out = torch.zeros(len(batch), 16)
        for i, t in enumerate(batch):
            for w in t.split():
                out[i, sum(map(ord, w)) % 16] += 1
        return out

    def encode(self, items):
        return encode_items(self, items)
