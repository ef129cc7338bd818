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


def test_own_bert_and_tokenizer_equal_transformers_bit_for_bit(minilm, captions):
    """`Bert` (bert.py) and the `tokenizers` tokenizer give exactly transformers' ids and
    hidden states on real captions (fp32 SDPA, the default, and bf16 eager), so the
    encoder's vectors and its cache id are unchanged; and the encoder imports no transformers."""
    import subprocess
    import sys

    from transformers import AutoModel, AutoTokenizer

    from polymodal.features.encoders.bert import Bert
    from polymodal.features.encoders.wordpiece import load_tokenizer, token_ids

    texts = [r["title"] + ". " + r["description"] for r in captions]
    texts += ["word " * 600, "Ünïcödé  naïve café — 東京", "x"]  # truncated, unicode, short
    ref_tok = AutoTokenizer.from_pretrained(minilm.model_dir, local_files_only=True)
    ref_ids = ref_tok(texts, truncation=True, max_length=256)["input_ids"]
    ours = token_ids(load_tokenizer(minilm.model_dir / "tokenizer.json", 256), texts)
    assert ours == ref_ids and max(map(len, ours)) == 256
    assert minilm.count_tokens("word " * 600) == len(ref_tok("word " * 600)["input_ids"]) > 256
    # bf16 on the short texts only: without bf16 units (AVX2) it runs ~10x slower than fp32
    for attn, dtype, some in (("sdpa", torch.float32, texts), ("eager", torch.bfloat16,
                                                                texts[:8] + texts[-2:])):
        batch = ref_tok(some, padding=True, truncation=True, max_length=256,
                        return_tensors="pt")
        keep = batch["attention_mask"].bool()
        ref = AutoModel.from_pretrained(minilm.model_dir, local_files_only=True,
                                        attn_implementation=attn).eval().to(dtype=dtype)
        mine = Bert.from_folder(minilm.model_dir, attn).to(dtype=dtype)
        with torch.inference_mode():
            a = ref(input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"]).last_hidden_state
            b = mine(batch["input_ids"], batch["attention_mask"])
        assert torch.equal(a[keep], b[keep]), (attn, dtype)
    code = ("import sys; from polymodal.features.encoders.registry import build_encoder; "
            "v = build_encoder('minilm').encode(['a red apple', 'two cats']); "
            "print(tuple(v.shape), any(m.split('.')[0] == 'transformers' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "False" and "(2, 384)" in out.stdout


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


def test_model_folder_problems_are_one_line(minilm, tmp_path):
    """No tokenizer.json, a damaged one, a config that is not a BERT: one PolymodalError line."""
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(minilm.model_dir, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(PolymodalError, match=r"cannot load MiniLM from .*tokenizer\.json: No such"):
        MiniLMEncoder(folder)
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(PolymodalError, match=r"tokenizer\.json: "):
        MiniLMEncoder(folder)
    shutil.copyfile(minilm.model_dir / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(PolymodalError, match="not a BERT with absolute positions and GELU") as e:
        MiniLMEncoder(folder, backend="torch")  # own BERT (a CPU with bf16 defaults to OpenVINO)
    assert len(str(e.value).splitlines()) == 1


def test_length_batches_budget():
    lengths = [5, 50, 7, 3, 200, 9, 9]
    batches = length_batches(lengths, max_batch_tokens=60, max_batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * width <= 60
