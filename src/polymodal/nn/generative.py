"""Small generator / decoder modules for cross-modal generation, plus their pure losses.

Caption decoders (conditioned on one image feature vector; token ids 0-3 are
``<pad> <bos> <eos> <unk>``):

- `GRUCaptioner`: the image feature sets the GRU's initial state.
- `TransformerCaptioner`: the image feature is projected to ``prefix`` tokens that every word
  attends to (prefix-LM conditioning: prefix tokens see each other, words see the prefix and
  the words before them).

Both map ``(features [B, F], tokens [B, T]) -> logits [B, T, V]``; `beam_decode` works on either.

Image generators (conditioned on a vector: a text / audio embedding or a one-hot label):

- `CVAE`: convolutional conditional VAE; `cvae_loss` = Bernoulli reconstruction + beta * KL.
- `CondGAN`: DCGAN-style generator and a projection discriminator (Miyato & Koyama 2018),
  optional minibatch-std feature; `d_loss` / `g_loss` are the non-saturating GAN losses.

Conditions are standardised with the training mean and one global scale (buffers saved with
the weights), so a run generates from a raw embedding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


class GRUCaptioner(nn.Module):
    """Image feature -> initial GRU state; teacher-forced word logits."""

    def __init__(self, feat_dim: int, vocab_size: int, embed_dim: int = 256, hidden: int = 512,
                 dropout: float = 0.1, max_len: int = 20):
        super().__init__()
        self.spec = {"kind": "gru", "feat_dim": feat_dim, "vocab_size": vocab_size,
                     "embed_dim": embed_dim, "hidden": hidden, "dropout": dropout,
                     "max_len": max_len}
        self.norm = nn.LayerNorm(feat_dim)
        self.init = nn.Sequential(nn.Linear(feat_dim, hidden), nn.Tanh())
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.gru = nn.GRU(embed_dim, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        h0 = self.init(self.norm(feats)).unsqueeze(0)
        y, _ = self.gru(self.drop(self.embed(tokens)), h0)
        return self.out(self.drop(y))


class TransformerCaptioner(nn.Module):
    """Image feature -> ``prefix`` tokens; a small pre-norm Transformer over [prefix; words]."""

    def __init__(self, feat_dim: int, vocab_size: int, embed_dim: int = 256, layers: int = 2,
                 heads: int = 4, prefix: int = 4, dropout: float = 0.1, max_len: int = 20):
        super().__init__()
        self.spec = {"kind": "transformer", "feat_dim": feat_dim, "vocab_size": vocab_size,
                     "embed_dim": embed_dim, "layers": layers, "heads": heads, "prefix": prefix,
                     "dropout": dropout, "max_len": max_len}
        self.n_prefix, self.d = prefix, embed_dim
        self.norm = nn.LayerNorm(feat_dim)
        self.prefix = nn.Linear(feat_dim, prefix * embed_dim)
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.pos = nn.Parameter(torch.randn(prefix + max_len + 2, embed_dim) * 0.02)
        layer = nn.TransformerEncoderLayer(embed_dim, heads, 4 * embed_dim, dropout,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(embed_dim)
        self.out = nn.Linear(embed_dim, vocab_size)

    def forward(self, feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, t = tokens.shape
        p = self.prefix(self.norm(feats)).view(b, self.n_prefix, self.d)
        x = torch.cat([p, self.embed(tokens)], 1)
        n = x.shape[1]
        x = x + self.pos[:n]
        i = torch.arange(n, device=x.device)
        blocked = (i[None, :] > i[:, None]) & (i[None, :] >= self.n_prefix)
        mask = torch.zeros(n, n, device=x.device).masked_fill(blocked, float("-inf"))
        y = self.blocks(x, mask=mask)
        return self.out(self.ln(y[:, self.n_prefix:]))


def build_captioner(spec: dict) -> nn.Module:
    """Rebuild a caption decoder from its ``spec`` (as saved in a run's config.yaml)."""
    from polymodal.nn.registry import CAPTION_DECODERS

    return CAPTION_DECODERS.build(spec["kind"], **{k: v for k, v in spec.items() if k != "kind"})


def caption_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Token cross-entropy, padding ignored."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=PAD)


def beam_step(scores: torch.Tensor, logp: torch.Tensor, seqs: torch.Tensor,
              done: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of beam search over ``b`` rows x ``k`` beams: ``scores`` [b, k] summed log-probs,
    ``logp`` [b*k, V] next-token log-probs (changed in place: finished beams only extend with
    ``<pad>`` at no cost), ``seqs`` [b*k, t], ``done`` [b*k] -> the new (scores, seqs, done)."""
    b, k = scores.shape
    v = logp.shape[1]
    logp[done] = float("-inf")
    logp[done, PAD] = 0.0
    scores, idx = (scores.view(-1, 1) + logp).view(b, k * v).topk(k, dim=1)
    src = (idx // v + torch.arange(b)[:, None] * k).view(-1)
    tok = (idx % v).view(-1)
    return scores, torch.cat([seqs[src], tok[:, None]], 1), done[src] | (tok == EOS)


@torch.no_grad()
def beam_decode(model: nn.Module, feats: torch.Tensor, beam: int = 1, max_len: int = 20,
                length_penalty: float = 0.0) -> list[list[int]]:
    """Word ids (without specials) for each feature row. ``beam=1`` is greedy decoding. Beams
    are ranked by summed log-probability / length**``length_penalty``; ``<unk>`` is never
    emitted."""
    model.eval()
    b, k = feats.shape[0], max(1, int(beam))
    fr = feats.repeat_interleave(k, 0)
    seqs = torch.full((b * k, 1), BOS, dtype=torch.long)
    scores = torch.full((b, k), float("-inf"))
    scores[:, 0] = 0.0
    done = torch.zeros(b * k, dtype=torch.bool)
    for _ in range(max_len + 1):
        logp = F.log_softmax(model(fr, seqs)[:, -1].float(), -1)
        logp[:, [PAD, BOS, UNK]] = float("-inf")
        scores, seqs, done = beam_step(scores, logp, seqs, done)
        if bool(done.all()):
            break
    lengths = ((seqs != PAD) & (seqs != BOS)).sum(1).clamp_min(1).view(b, k).float()
    best = (scores / lengths ** length_penalty).argmax(1)
    out = []
    for i in range(b):
        ids = []
        for t in seqs[i * k + int(best[i]), 1:].tolist():
            if t in (EOS, PAD):
                break
            ids.append(t)
        out.append(ids)
    return out


# ---------------------------------------------------------------- image generators

def _stages(size: int) -> int:
    """Number of stride-2 stages: 28 -> 7 (2), 32 -> 4 (3), 64 -> 4 (4)."""
    n = 0
    while size % 2 == 0 and size // 2 >= 4 and n < 4:
        size //= 2
        n += 1
    return n


def conv_encoder(channels: int, size: int, width: int, norm: bool = True
                 ) -> tuple[nn.Sequential, int]:
    """Stride-2 convolutions halving the image ``_stages(size)`` times; (module, flat dim)."""
    layers: list[nn.Module] = []
    c_in, c = channels, width
    for i in range(_stages(size)):
        layers.append(nn.Conv2d(c_in, c, 4, 2, 1))
        if norm and i > 0:
            layers.append(nn.BatchNorm2d(c))
        layers.append(nn.LeakyReLU(0.2))
        c_in, c = c, min(c * 2, width * 8)
    base = size >> _stages(size)
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), c_in * base * base


def conv_decoder(in_dim: int, channels: int, size: int, width: int) -> nn.Sequential:
    """Linear -> feature map of side ``size / 2**stages`` -> transposed convolutions ->
    ``[B, channels, size, size]`` (unbounded: apply sigmoid / tanh)."""
    n = _stages(size)
    base = size >> n
    c = width * 2 ** (n - 1)
    layers: list[nn.Module] = [nn.Linear(in_dim, c * base * base), nn.Unflatten(1, (c, base, base)),
                               nn.BatchNorm2d(c), nn.ReLU()]
    for i in range(n):
        last = i == n - 1
        c_out = channels if last else max(c // 2, width)
        layers.append(nn.ConvTranspose2d(c, c_out, 4, 2, 1))
        if not last:
            layers += [nn.BatchNorm2d(c_out), nn.ReLU()]
        c = c_out
    return nn.Sequential(*layers)


class CondNorm(nn.Module):
    """Standardise condition vectors with a stored mean and a single scale."""

    def __init__(self, cond_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(cond_dim))
        self.register_buffer("scale", torch.ones(()))

    def set_stats(self, conds: torch.Tensor) -> None:
        self.mean.copy_(conds.mean(0))
        self.scale.copy_((conds - conds.mean(0)).pow(2).sum(1).mean().sqrt().clamp_min(1e-6))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return (c - self.mean) / self.scale


def _cond_net(cond_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cond_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden))


class CVAE(nn.Module):
    """Conditional VAE: q(z | x, c) and p(x | z, c) with convolutional encoder / decoder."""

    def __init__(self, channels: int, size: int, cond_dim: int, latent_dim: int = 16,
                 width: int = 32, cond_hidden: int = 128):
        super().__init__()
        self.spec = {"kind": "cvae", "channels": channels, "size": size, "cond_dim": cond_dim,
                     "latent_dim": latent_dim, "width": width, "cond_hidden": cond_hidden}
        self.latent_dim = latent_dim
        self.cond_norm = CondNorm(cond_dim)
        self.cond = _cond_net(cond_dim, cond_hidden)
        self.enc, flat = conv_encoder(channels, size, width)
        self.to_stats = nn.Linear(flat + cond_hidden, 2 * latent_dim)
        self.dec = conv_decoder(latent_dim + cond_hidden, channels, size, width)

    def forward(self, x: torch.Tensor, c: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction logits, mu, logvar); z is sampled in training mode, = mu in eval."""
        h = self.cond(self.cond_norm(c))
        mu, logvar = self.to_stats(torch.cat([self.enc(x * 2 - 1), h], 1)).chunk(2, 1)
        logvar = logvar.clamp(-10, 10)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.dec(torch.cat([z, h], 1)), mu, logvar

    @torch.no_grad()
    def sample(self, c: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] for conditions ``c`` (z ~ N(0, I) unless given)."""
        z = torch.randn(len(c), self.latent_dim) if z is None else z
        return torch.sigmoid(self.dec(torch.cat([z, self.cond(self.cond_norm(c))], 1)))


def cvae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
              beta: float = 1.0) -> torch.Tensor:
    """Negative ELBO per image: Bernoulli reconstruction (summed over pixels) + beta * KL."""
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / len(x)
    return rec + beta * kl


class CondGAN(nn.Module):
    """DCGAN-style conditional generator + projection discriminator.

    Options (defaults = the first recipe, so its saved runs still load; `fit generate` uses
    ``d_norm=False, cond_gain=True, mbstd=True``):

    - ``cond_gain``: multiply the standardised condition (unit mean squared norm) by
      ``sqrt(cond_dim)`` so each dimension has about unit variance; without it the condition
      reaches both networks ~20x weaker than the noise and the prompt is largely ignored.
    - ``d_norm``: batch-norm in the discriminator (off: spectral norm alone).
    - ``mbstd``: append the batch's mean feature standard deviation to the discriminator's
      features (Karras et al. 2018), so a batch lacking variety can be told apart.
    """

    def __init__(self, channels: int, size: int, cond_dim: int, latent_dim: int = 64,
                 width: int = 32, cond_hidden: int = 128, d_norm: bool = True,
                 cond_gain: bool = False, mbstd: bool = False):
        super().__init__()
        self.spec = {"kind": "gan", "channels": channels, "size": size, "cond_dim": cond_dim,
                     "latent_dim": latent_dim, "width": width, "cond_hidden": cond_hidden,
                     "d_norm": d_norm, "cond_gain": cond_gain, "mbstd": mbstd}
        self.latent_dim = latent_dim
        self.gain = cond_dim ** 0.5 if cond_gain else 1.0
        self.cond_norm = CondNorm(cond_dim)
        self.g_cond = _cond_net(cond_dim, cond_hidden)
        self.gen = conv_decoder(latent_dim + cond_hidden, channels, size, width)
        self.d_cond = _cond_net(cond_dim, cond_hidden)
        self.disc, flat = conv_encoder(channels, size, width, norm=d_norm)
        self.mbstd = mbstd
        self.d_out = nn.Linear(flat + int(mbstd), 1)
        self.d_embed = nn.Linear(cond_hidden, flat)

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.d_cond, self.disc, self.d_out, self.d_embed)
                for p in m.parameters()]

    def generate(self, c: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] (differentiable)."""
        z = torch.randn(len(c), self.latent_dim) if z is None else z
        x = self.gen(torch.cat([z, self.g_cond(self.cond_norm(c) * self.gain)], 1))
        return (torch.tanh(x) + 1) / 2

    def critic(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Discriminator logits ``[B]`` for images in [0, 1]."""
        f = self.disc(x * 2 - 1)
        proj = (self.d_embed(self.d_cond(self.cond_norm(c) * self.gain)) * f).sum(1)
        if self.mbstd:  # minibatch standard deviation: lets D see a batch lacking variety
            sd = f.std(0, unbiased=False).mean() if len(f) > 1 else f.new_zeros(())
            return self.d_out(torch.cat([f, sd.expand(len(f), 1)], 1)).squeeze(1) + proj
        return self.d_out(f).squeeze(1) + proj

    @torch.no_grad()
    def sample(self, c: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.generate(c, z)


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating discriminator loss."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss."""
    return F.softplus(-fake_logits).mean()


def build_generator(spec: dict) -> nn.Module:
    """Rebuild a CVAE / CondGAN from its ``spec``."""
    from polymodal.nn.registry import GENERATORS

    return GENERATORS.build(spec["kind"], **{k: v for k, v in spec.items() if k != "kind"})
