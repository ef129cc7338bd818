"""hf:<dir>: tiny randomly initialised BERT / ViT / CLIP / Wav2Vec2 saved locally (no downloads)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.features.encoders.base import Encoder
from polymodal.features.encoders.registry import build_encoder
from polymodal.core.errors import PolymodalError, UsageError

WORDS = ["the", "a", "cat", "dog", "red", "blue", "car", "sat", "on", "mat", "runs", "fast"]


def tiny_tokenizer(tmp: Path):
    from transformers import BertTokenizerFast

    vocab = tmp / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = tiny_tokenizer(out)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=64)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    out = tmp_path_factory.mktemp("tiny-vit")
    torch.manual_seed(0)
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64)).save_pretrained(out)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    out = tmp_path_factory.mktemp("tiny-clip")
    tok = tiny_tokenizer(out)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=32, eos_token_id=tok.sep_token_id,
                         pad_token_id=0, bos_token_id=tok.cls_token_id),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2),
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(out)
    tok.save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
                       ).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def clipart(shared_data) -> list[Path]:
    rows = [json.loads(line) for line in
            (shared_data / "openclipart" / "captions.jsonl").open(encoding="utf-8")]
    return [shared_data / "openclipart" / r["image"] for r in rows[::900][:5]]


def test_text_mean_pooling(bert_dir):
    enc = build_encoder("hf:" + str(bert_dir), modality="text")
    assert isinstance(enc, Encoder)
    assert enc.dim == 32 and enc.modality == "text" and "pool=mean" in enc.id
    texts = ["the cat sat on the mat", "a red car runs fast", "dog", "the cat sat on the mat"]
    x = enc.encode(texts)
    assert x.shape == (4, 32) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.allclose(x[0], x[3]) and not torch.allclose(x[0], x[1])
    # padding must not leak into the mean: each text alone gives the same vector
    for i, t in enumerate(texts[:3]):
        assert torch.allclose(enc.encode([t])[0], x[i], atol=1e-5)
    # and it is the masked mean of the model's last hidden state
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(bert_dir), AutoModel.from_pretrained(bert_dir)
    with torch.no_grad():
        b = tok(["dog"], return_tensors="pt")
        ref = model(**b).last_hidden_state.mean(dim=1)
    assert torch.allclose(ref[0], x[2], atol=1e-5)


def test_image_pooled_output(vit_dir, clipart):
    enc = build_encoder("hf:" + str(vit_dir), modality="image")
    assert enc.dim == 32 and enc.modality == "image"
    x = enc.encode(clipart)
    assert x.shape == (len(clipart), 32) and torch.isfinite(x).all()
    assert torch.cdist(x, x).fill_diagonal_(1.0).min() > 1e-4  # a vector per image
    assert torch.allclose(enc.encode(clipart[:1])[0], x[0], atol=1e-5)


def test_clip_shared_space(clip_dir, clipart):
    text = build_encoder("hf:" + str(clip_dir), modality="text")
    image = build_encoder("hf:" + str(clip_dir), modality="image")
    assert text.dim == image.dim == 16
    assert "pool=projection" in text.id and "pool=projection" in image.id
    t = text.encode(["a red car", "the blue dog sat", "cat"])
    i = image.encode(clipart[:2])
    assert t.shape == (3, 16) and i.shape == (2, 16)
    assert torch.allclose(text.encode(["cat"])[0], t[2], atol=1e-5)


def test_audio_mean_pooling(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
                                 conv_kernel=(10, 8), num_conv_pos_embeddings=8,
                                 num_conv_pos_embedding_groups=2)).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor().save_pretrained(tmp_path)
    enc = build_encoder("hf:" + str(tmp_path), modality="audio")
    rng = np.random.default_rng(0)
    clips = [rng.normal(size=n).astype(np.float32) for n in (4000, 9000)]
    x = enc.encode_prepared([enc.prepare(c) for c in clips])
    assert x.shape == (2, enc.dim) and enc.dim == 32 and torch.isfinite(x).all()
    assert not torch.allclose(x[0], x[1])


def test_cannot_load_gives_clear_error(tmp_path):
    with pytest.raises(PolymodalError, match="not a local directory.*local-dir"):
        build_encoder("hf:no-such-org/no-such-model-xyz", modality="text")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(PolymodalError, match="directory"):
        build_encoder("hf:" + str(tmp_path), modality="text")
    with pytest.raises(UsageError):
        build_encoder("hf:whatever", modality="video")
    with pytest.raises(UsageError):
        build_encoder("hf:whatever")
