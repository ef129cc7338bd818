"""Retrieval-augmented caption decoder (in the spirit of SmallCap, Ramos et al. 2023, with a
pointer-generator copy head, See et al. 2017).

`RagCaptioner` is a small pre-norm Transformer decoder whose words cross-attend to a memory of
``prefix`` image tokens (a projection of the image feature) followed by the tokens of the
captions of the image's ``k`` nearest TRAINING neighbours. Each neighbour token carries its word
embedding, its position in its caption, its neighbour rank and the neighbour's cosine similarity
to the query, so the decoder can learn when to copy and when to generalise. With ``copy`` the
output is a mixture ``p_gen * softmax(vocab logits) + (1 - p_gen) * pointer(neighbour tokens)``
over an *extended* vocabulary: ids ``>= vocab_size`` are the query's out-of-vocabulary
neighbour words (``V + j`` = its ``j``-th distinct one), so rare names and numbers can be copied.

Inputs (the task layer builds them, `polymodal.tasks.caption.rag`):
``feats [B, F]``, ``tokens [B, T]`` (vocabulary ids; OOV = ``<unk>``), ``nb_ids [B, K, L]``
(vocabulary ids of the neighbour captions, ``<pad>``-padded), ``nb_ext [B, K, L]`` (their
extended ids), ``nb_sims [B, K]``. ``forward`` returns log-probabilities ``[B, T, V + K * L]``.
`rag_beam_decode` returns every final beam with its score (for consensus re-ranking).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.nn.generative import BOS, EOS, PAD, UNK, beam_step


class RagCaptioner(nn.Module):
    def __init__(self, feat_dim: int, vocab_size: int, embed_dim: int = 128, layers: int = 2,
                 heads: int = 4, prefix: int = 2, neighbours: int = 4, dropout: float = 0.1,
                 max_len: int = 16, copy: bool = True):
        super().__init__()
        self.spec = {"kind": "rag", "feat_dim": feat_dim, "vocab_size": vocab_size,
                     "embed_dim": embed_dim, "layers": layers, "heads": heads, "prefix": prefix,
                     "neighbours": neighbours, "dropout": dropout, "max_len": max_len,
                     "copy": copy}
        d, self.d, self.n_prefix, self.vocab_size, self.copy = (embed_dim, embed_dim, prefix,
                                                               vocab_size, copy)
        self.norm = nn.LayerNorm(feat_dim)
        self.prefix = nn.Linear(feat_dim, prefix * d)
        self.embed = nn.Embedding(vocab_size, d, padding_idx=PAD)
        self.pos = nn.Parameter(torch.randn(max_len + 2, d) * 0.02)  # word positions
        self.nb_pos = nn.Parameter(torch.randn(max_len + 2, d) * 0.02)
        self.rank = nn.Parameter(torch.randn(neighbours, d) * 0.02)
        self.sim = nn.Linear(1, d)
        self.mem_ln = nn.LayerNorm(d)
        layer = nn.TransformerDecoderLayer(d, heads, 4 * d, dropout, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerDecoder(layer, layers)
        self.ln = nn.LayerNorm(d)
        self.out = nn.Linear(d, vocab_size)
        self.drop = nn.Dropout(dropout)
        if copy:
            self.q = nn.Linear(d, d)
            self.k = nn.Linear(d, d)
            self.gate = nn.Linear(2 * d, 1)

    def memory(self, feats: torch.Tensor, nb_ids: torch.Tensor, nb_sims: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(memory [B, P + K * L, d], key padding mask [B, P + K * L]: True = ignore)."""
        b, k, ln = nb_ids.shape
        img = self.prefix(self.norm(feats)).view(b, self.n_prefix, self.d)
        nb = (self.embed(nb_ids) + self.nb_pos[:ln][None, None] + self.rank[:k][None, :, None]
              + self.sim(nb_sims[..., None].float())[:, :, None])
        mem = self.mem_ln(torch.cat([img, self.drop(nb.view(b, k * ln, self.d))], 1))
        pad = torch.cat([torch.zeros(b, self.n_prefix, dtype=torch.bool, device=feats.device),
                         (nb_ids == PAD).view(b, k * ln)], 1)
        return mem, pad

    def step_logprobs(self, mem: torch.Tensor, pad: torch.Tensor, nb_ext: torch.Tensor,
                      tokens: torch.Tensor) -> torch.Tensor:
        """Log-probabilities over the extended vocabulary ``[B, T, V + K * L]``."""
        b, t = tokens.shape
        x = self.drop(self.embed(tokens) + self.pos[:t])
        causal = torch.triu(torch.full((t, t), float("-inf"), device=x.device), 1)
        h = self.ln(self.blocks(x, mem, tgt_mask=causal, memory_key_padding_mask=pad))
        n_ext = nb_ext.shape[1] * nb_ext.shape[2]
        p_vocab = F.softmax(self.out(self.drop(h)).float(), -1)
        p_vocab = F.pad(p_vocab, (0, n_ext))
        if not self.copy:
            return p_vocab.clamp_min(1e-12).log()
        nb_mem = mem[:, self.n_prefix:]
        att = torch.einsum("btd,bnd->btn", self.q(h), self.k(nb_mem)) / self.d ** 0.5
        att = att.float().masked_fill(pad[:, None, self.n_prefix:], float("-inf"))
        att = torch.nan_to_num(F.softmax(att, -1))  # a row with no neighbour token: all 0
        ctx = torch.einsum("btn,bnd->btd", att.to(nb_mem.dtype), nb_mem)
        g = torch.sigmoid(self.gate(torch.cat([h, ctx], -1))).float()
        p_copy = torch.zeros_like(p_vocab).scatter_add_(
            2, nb_ext.reshape(b, 1, n_ext).expand(b, t, n_ext), att)
        return (g * p_vocab + (1 - g) * p_copy).clamp_min(1e-12).log()

    def forward(self, feats: torch.Tensor, tokens: torch.Tensor, nb_ids: torch.Tensor,
                nb_ext: torch.Tensor, nb_sims: torch.Tensor) -> torch.Tensor:
        mem, pad = self.memory(feats, nb_ids, nb_sims)
        return self.step_logprobs(mem, pad, nb_ext, tokens)


def rag_loss(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the (extended-id) targets, padding ignored."""
    return F.nll_loss(logp.reshape(-1, logp.shape[-1]), targets.reshape(-1), ignore_index=PAD)


def _blocked(seqs: list[list[int]], n: int) -> list[list[int]]:
    """For each sequence, the tokens that would repeat one of its n-grams."""
    out = []
    for s in seqs:
        if n < 1 or len(s) < n:
            out.append([])
            continue
        prefix = tuple(s[len(s) - n + 1:]) if n > 1 else ()
        out.append([s[i + n - 1] for i in range(len(s) - n + 1)
                    if tuple(s[i:i + n - 1]) == prefix])
    return out


@torch.no_grad()
def rag_beam_decode(model: RagCaptioner, feats: torch.Tensor, nb_ids: torch.Tensor,
                    nb_ext: torch.Tensor, nb_sims: torch.Tensor, n_oov: list[int],
                    beam: int = 1, max_len: int = 16, no_repeat_ngram: int = 0
                    ) -> list[list[tuple[list[int], float]]]:
    """Every final beam of each row as ``(extended ids without specials, summed log-prob)``,
    best first. ``<unk>`` and unused extended ids are never emitted; with ``no_repeat_ngram``
    = n no n-gram appears twice in a caption (1: no word twice)."""
    model.eval()
    b, k = feats.shape[0], max(1, int(beam))
    rep = lambda t: t.repeat_interleave(k, 0)  # noqa: E731
    mem, pad = model.memory(feats, nb_ids, nb_sims)
    mem, pad, ext = rep(mem), rep(pad), rep(nb_ext)
    v = model.vocab_size + nb_ext.shape[1] * nb_ext.shape[2]
    unused = torch.zeros(b, v, dtype=torch.bool)
    for i, n in enumerate(n_oov):
        unused[i, model.vocab_size + n:] = True
    unused = rep(unused)
    seqs = torch.full((b * k, 1), BOS, dtype=torch.long)
    scores = torch.full((b, k), float("-inf"))
    scores[:, 0] = 0.0
    done = torch.zeros(b * k, dtype=torch.bool)
    for _ in range(max_len + 1):
        inp = seqs.masked_fill(seqs >= model.vocab_size, UNK)
        logp = model.step_logprobs(mem, pad, ext, inp)[:, -1]
        logp[:, [PAD, BOS, UNK]] = float("-inf")
        logp[unused] = float("-inf")
        if no_repeat_ngram:
            for r, toks in enumerate(_blocked(seqs[:, 1:].tolist(), no_repeat_ngram)):
                if toks:
                    logp[r, toks] = float("-inf")
        scores, seqs, done = beam_step(scores, logp, seqs, done)
        if bool(done.all()):
            break
    out = []
    for i in range(b):
        row = []
        for j in range(k):
            if not torch.isfinite(scores[i, j]):
                continue
            ids = []
            for t in seqs[i * k + j, 1:].tolist():
                if t in (EOS, PAD):
                    break
                ids.append(t)
            row.append((ids, float(scores[i, j])))
        out.append(row)
    return out
