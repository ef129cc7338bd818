"""A BERT encoder in plain torch, for the bundled MiniLM (`polymodal.features.encoders.text`).

Importing ``transformers.BertModel`` costs about 6 s of every process that encodes text on this
project's 2-core machine (``python -c "import torch; from transformers import BertModel"``
9.55 s against 3.17 s for torch alone), more than encoding a search query or a few hundred
captions. MiniLM is a 6-layer BERT, so `Bert` is that network: absolute position and token-type
embeddings, post-LayerNorm layers of multi-head self-attention and an exact-GELU feed-forward
block. Its modules carry Hugging Face's names, so ``model.safetensors`` loads into it unchanged
(``pooler.*`` and the ``position_ids`` buffer are not used). Attention is PyTorch's SDPA with a
boolean padding mask, or the explicit softmax (``attention="eager"``; faster for bf16 on short
texts, as in transformers). A test compares its vectors with ``SentenceTransformer.encode`` and
with ``transformers.BertModel`` on real captions.

Other Hugging Face text models still load through transformers (`polymodal.features.encoders.hf`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

UNUSED = ("pooler.", "embeddings.position_ids")  # checkpoint entries this encoder does not use


class _Embeddings(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        h = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], h, padding_idx=cfg.get(
            "pad_token_id", 0))
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], h)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], h)
        self.LayerNorm = nn.LayerNorm(h, eps=cfg["layer_norm_eps"])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]  # type 0
        return self.LayerNorm(x + self.position_embeddings(pos)[None])  # (transformers' order)


class _SelfAttention(nn.Module):
    def __init__(self, h: int):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)


class _DenseNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)`` (BERT's post-norm sub-layer output)."""

    def __init__(self, d_in: int, h: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(d_in, h)
        self.LayerNorm = nn.LayerNorm(h, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, h: int, eps: float):
        super().__init__()
        self.self = _SelfAttention(h)
        self.output = _DenseNorm(h, h, eps)


class _Intermediate(nn.Module):
    def __init__(self, h: int, inner: int):
        super().__init__()
        self.dense = nn.Linear(h, inner)


class _Layer(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        h, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.heads = cfg["num_attention_heads"]
        self.attention = _Attention(h, eps)
        self.intermediate = _Intermediate(h, cfg["intermediate_size"])
        self.output = _DenseNorm(cfg["intermediate_size"], h, eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None, eager: bool) -> torch.Tensor:
        """``keep [B, 1, L, L]``: which keys each query attends to (None: all)."""
        b, n, h = x.shape
        sa = self.attention.self
        scale = (h // self.heads) ** -0.5

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, h // self.heads).transpose(1, 2)

        q, k, v = split(sa.query(x)), split(sa.key(x)), split(sa.value(x))
        if eager:
            scores = torch.matmul(q, k.transpose(2, 3)) * scale
            if keep is not None:
                scores = scores + torch.zeros((), dtype=scores.dtype).masked_fill(
                    ~keep, torch.finfo(scores.dtype).min)
            a = torch.matmul(torch.softmax(scores, -1), v)
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=scale)
        x = self.attention.output(a.transpose(1, 2).reshape(b, n, h), x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class _Encoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg["num_hidden_layers"]))


class Bert(nn.Module):
    """``Bert(config)(input_ids [B, L], attention_mask [B, L]) -> last hidden state [B, L, H]``
    (see the module doc). ``attention``: ``"sdpa"`` or ``"eager"``."""

    def __init__(self, config: dict, attention: str = "sdpa"):
        super().__init__()
        if config.get("model_type") != "bert" or config.get("position_embedding_type",
                                                            "absolute") != "absolute" \
                or config.get("hidden_act") != "gelu":
            raise ValueError("not a BERT with absolute positions and GELU: load it with "
                             "transformers")
        if attention not in ("sdpa", "eager"):
            raise ValueError(f"attention must be 'sdpa' or 'eager', got {attention!r}")
        self.eager = attention == "eager"
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # as transformers builds it: [B, 1, L, L], keys that are tokens; None without padding
        mask = attention_mask.bool()
        keep = None if bool(mask.all()) else mask[:, None, None, :].expand(
            -1, 1, mask.shape[1], -1)
        x = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            x = layer(x, keep, self.eager)
        return x

    @classmethod
    def from_folder(cls, folder: str | Path, attention: str = "sdpa") -> "Bert":
        """``config.json`` + ``model.safetensors`` of a Hugging Face BERT folder; every weight
        of the network must be in the file (a `ValueError` names what is missing)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        model = cls(json.loads((folder / "config.json").read_text()), attention)
        state = {k: v for k, v in load_file(str(folder / "model.safetensors")).items()
                 if not k.startswith(UNUSED)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{folder / 'model.safetensors'}: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        return model.eval()


__all__ = ["Bert"]
