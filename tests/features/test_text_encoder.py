"""minilm: shapes, agreement with sentence-transformers, semantics on real captions."""
from __future__ import annotations

import json
import random

import pytest
import torch

from polymodal.features.encoders.base import Encoder
from polymodal.features.encoders.registry import build_encoder
from polymodal.features.encoders.text import MiniLMEncoder, length_batches
from polymodal.core.errors import PolymodalError, UsageError


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    return build_encoder("minilm")


@pytest.fixture(scope="module")
def captions(shared_data) -> list[dict]:
    """Openclipart rows with a real description distinct from the title."""
    rows = [json.loads(line) for line in
            (shared_data / "openclipart" / "captions.jsonl").open(encoding="utf-8")]
    good = {}
    for r in rows:
        d = (r.get("description") or "").strip()
        if len(d) > 20 and d.lower() != r["title"].lower() and r["title"] not in good:
            good[r["title"]] = r
    picked = list(good.values())
    random.Random(0).shuffle(picked)
    return picked[:40]


def test_protocol_and_shape(minilm):
    assert isinstance(minilm, Encoder)
    assert minilm.modality == "text" and minilm.dim == 384
    assert "maxlen=256" in minilm.id
    x = minilm.encode(["a cat on a mat", "a red sports car", "hello"])
    assert x.shape == (3, 384) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert torch.allclose(x.norm(dim=1), torch.ones(3), atol=1e-5)


def test_matches_sentence_transformers(minilm, captions):
    from sentence_transformers import SentenceTransformer

    texts = [r["title"] + ". " + r["description"] for r in captions[:24]]
    texts.append("word " * 600)  # longer than 256 word pieces: truncated the same way
    ref = SentenceTransformer(str(minilm.model_dir), device="cpu").encode(
        texts, convert_to_tensor=True)
    ours = minilm.encode(texts)
    cos = torch.nn.functional.cosine_similarity(ours, ref.float())
    assert cos.min() > 0.999


def test_order_and_duplicates(minilm):
    texts = ["short", "a somewhat longer sentence about boats", "short", "mid length text"]
    x = minilm.encode(texts)
    assert torch.equal(x[0], x[2])
    assert not torch.allclose(x[0], x[1])
    perm = [3, 1, 0]
    y = minilm.encode([texts[i] for i in perm])
    assert torch.allclose(y, x[perm], atol=1e-5)
    # whitespace / unicode normalisation: the same text after prepare
    z = minilm.encode(["  short\n"])
    assert torch.allclose(z[0], x[0], atol=1e-6)


def test_similar_closer_than_unrelated(minilm):
    triplets = [
        ("A man is playing a guitar.", "Someone strums an acoustic guitar.",
         "The stock market fell sharply today."),
        ("A cat sleeps on the sofa.", "A kitten is napping on the couch.",
         "Heavy rain flooded the highway."),
        ("How do I bake bread?", "Recipe for homemade bread", "The train leaves at noon."),
    ]
    for a, b, c in triplets:
        x = minilm.encode([a, b, c])
        assert x[0] @ x[1] > x[0] @ x[2] + 0.2


def test_title_matches_own_description(minilm, captions):
    titles = minilm.encode([r["title"] for r in captions])
    descs = minilm.encode([r["description"] for r in captions])
    sim = titles @ descs.T
    own = sim.diag().mean()
    other = (sim.sum() - sim.diag().sum()) / (sim.numel() - len(captions))
    assert own > other + 0.15
    top1 = (sim.argmax(dim=1) == torch.arange(len(captions))).float().mean()
    assert top1 > 5 / len(captions)  # far above chance (1/40)


def test_bad_input(minilm):
    with pytest.raises(UsageError):
        minilm.prepare(None)
    with pytest.raises(PolymodalError, match="empty"):
        minilm.prepare(" \n\t ")
    assert minilm.encode_prepared([]).shape == (0, 384)


def test_length_batches_budget():
    lengths = [5, 50, 7, 3, 200, 9, 9]
    batches = length_batches(lengths, max_batch_tokens=60, max_batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * width <= 60
