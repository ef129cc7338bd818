"""Text / audio -> image: a conditional VAE or GAN (`gen_models`) on embedding conditions.

``fit_generate(config, out)`` encodes the manifest's condition modality (cached; every caption of
a row is its own training pair), loads the images (grey 28x28 digits or RGB 64x64 drawings),
trains on the train split and writes::

    RUN/config.yaml  RUN/model.safetensors  RUN/metrics.json  RUN/samples/epoch_NNN.png
    RUN/train_log.csv  RUN/digit_classifier.safetensors (digit metrics only)

Metrics, named after the network that computes them (NOT comparable with published
Inception-v3 FID / IS):

- ``digits`` (labels 0-9, one channel): a `DigitCNN` trained here on the manifest's real train
  images; "conditional accuracy" = share of samples the classifier reads as the requested
  digit, "IS (DigitCNN, trained here)" and "FID (DigitCNN features, trained here)" against the
  real test images. The same numbers for real train images vs real test images are given as
  the reference a perfect generator would reach.
- ``efficientnet`` (drawings): "FID (EfficientNet-Lite0 pool features)" against real test images.

Model selection: the cVAE keeps the epoch with the best validation ELBO; the GAN keeps its last
epoch (no validation signal). The GAN trains its discriminator inside the step with its own
Adam optimizer (`discriminator_optimizer`), handed to `fit_loop` as an extra optimizer so that
its state is checkpointed and restored on resume.
GAN recipe: Adam betas (0.5, 0.999) for both networks (unless ``train.betas`` is set), condition
gain, spectral norm and minibatch-std in the discriminator, instance noise, one-sided label
smoothing and a mode-seeking term (see `_gan_step`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import PolymodalError
from polymodal.core.runfolder import RunFolder, absolute_paths
from polymodal.core.splits import write_splits
from polymodal.nn.generative import CVAE, CondGAN, cvae_loss, g_loss
from polymodal.tasks.generate import data as gd
from polymodal.tasks.generate.config import GenerateConfig
from polymodal.train.loop import fit_loop, seed_everything, torch_threads


GAN_NOISE = 0.1  # std of the instance noise added to every image the discriminator sees
GAN_SMOOTH = 0.9  # one-sided label smoothing: target for real images
GAN_D_LR = 1.0  # discriminator learning rate, as a share of the generator's
GAN_BETAS = (0.5, 0.999)  # Adam betas of both networks unless train.betas is set (DCGAN)
GAN_MS = 0.3  # weight of the mode-seeking term (Mao et al. 2019) in the generator loss


def _discriminator_layers(model: CondGAN) -> list[torch.nn.Module]:
    return [m for part in (model.disc, model.d_out, model.d_embed)
            for m in part.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def spectral_norm_discriminator(model: CondGAN, on: bool) -> None:
    """Add (``on``) or fold back spectral normalisation of the discriminator's weights; folded
    back before saving, so the saved keys are plain `CondGAN` weights."""
    for m in _discriminator_layers(model):
        if on:
            torch.nn.utils.spectral_norm(m)
        else:
            torch.nn.utils.remove_spectral_norm(m)


def discriminator_optimizer(model: CondGAN, lr: float,
                            betas: tuple[float, float] = GAN_BETAS) -> torch.optim.Adam:
    """The discriminator's own Adam: lr ``GAN_D_LR`` x the generator's ``lr``. Create it after
    `spectral_norm_discriminator` (which replaces the weights it optimises)."""
    return torch.optim.Adam(model.discriminator_parameters(), lr=lr * GAN_D_LR, betas=betas)


def _gan_step(d_opt: torch.optim.Optimizer):
    """A fit_loop step for `CondGAN`: one discriminator update with ``d_opt`` (see
    `discriminator_optimizer`; instance noise, one-sided label smoothing), then the generator
    loss with the discriminator frozen (its grads stay None, so the loop's optimizer skips it).

    The fakes come in pairs sharing a condition (i and i + B/2) with different z; the generator
    loss adds ``GAN_MS / (|G(c, z1) - G(c, z2)| / |z1 - z2|)`` (mode seeking), without which the
    generator ignored z and drew one image per prompt."""
    import torch.nn.functional as F

    def noisy(x: torch.Tensor) -> torch.Tensor:
        return x + GAN_NOISE * torch.randn_like(x)

    def step(model: CondGAN, batch) -> torch.Tensor:
        x, c = batch
        d_params = model.discriminator_parameters()
        for p in d_params:
            p.requires_grad_(True)
        h = len(c) // 2
        cf = torch.cat([c[:h], c[:h]], 0)  # fake conditions: pairs (i, i + h) share one
        z = torch.randn(2 * h, model.latent_dim)
        fake = model.generate(cf, z)
        real_logits = model.critic(noisy(x), c)
        loss_d = (GAN_SMOOTH * F.softplus(-real_logits).mean()
                  + (1 - GAN_SMOOTH) * F.softplus(real_logits).mean()
                  + F.softplus(model.critic(noisy(fake.detach()), cf)).mean())
        d_opt.zero_grad(set_to_none=True)
        loss_d.backward()
        d_opt.step()
        for p in d_params:
            p.requires_grad_(False)
            p.grad = None
        ms = ((fake[:h] - fake[h:]).abs().mean((1, 2, 3)) / (z[:h] - z[h:]).abs().mean(1)).mean()
        return g_loss(model.critic(noisy(fake), cf)) + GAN_MS / (ms + 1e-5)

    return step


def _build(cfg: GenerateConfig, channels: int, cond_dim: int) -> CVAE | CondGAN:
    if cfg.model == "cvae":
        return CVAE(channels, cfg.size, cond_dim, cfg.latent_dim, cfg.width)
    return CondGAN(channels, cfg.size, cond_dim, max(cfg.latent_dim, 32), cfg.width,
                   d_norm=False, cond_gain=True, mbstd=True)


def fit_generate(config: GenerateConfig, out: str | Path, resume: bool = False,
                 progress: bool = True) -> dict:
    """Train a conditional generator and score it; returns the content of metrics.json."""
    with torch_threads(config.threads):  # restored afterwards, also on error
        return _fit_generate(config, out, resume, progress)


def _fit_generate(config: GenerateConfig, out: str | Path, resume: bool = False,
                 progress: bool = True) -> dict:
    cfg, out = absolute_paths(config), Path(out)
    RunFolder(out).begin()
    data = gd.load_data(cfg, out, progress)
    kind = gd.metric_kind(cfg, data)
    gen = seed_everything(cfg.train.seed)
    tr, va = data.pairs("train", cfg.limit), data.pairs("val")
    if len(tr[0]) < 2:
        raise PolymodalError(f"{cfg.manifest}: fewer than 2 training pairs")
    model = _build(cfg, data.images.shape[1], data.cond.shape[1])
    model.cond_norm.set_stats(torch.from_numpy(data.cond[tr[1]]))
    if cfg.model == "gan":
        spectral_norm_discriminator(model, True)
    x_all = torch.from_numpy(data.images)
    c_all = torch.from_numpy(data.cond)
    tri, trc = torch.from_numpy(tr[0]), torch.from_numpy(tr[1])
    bs = min(cfg.batch_size, len(tri))

    def batches(epoch: int):
        perm = torch.randperm(len(tri), generator=gen)
        for s in range(0, len(perm) - bs + 1, bs):
            idx = perm[s:s + bs]
            yield x_all[tri[idx]], c_all[trc[idx]]

    preview = gd.preview_conditions(data)
    samples_dir = out / "samples"
    samples_dir.mkdir(exist_ok=True)

    def save_preview(mdl) -> None:
        k = len(list(samples_dir.glob("epoch_*.png"))) + 1
        z = torch.randn(len(preview) * 8, mdl.latent_dim, generator=torch.Generator().manual_seed(1))
        imgs = mdl.sample(c_all[np.repeat(preview, 8)], z).numpy()
        gd.save_grid(imgs, samples_dir / f"epoch_{k:03d}.png", cols=8)

    if cfg.model == "cvae":
        def step(mdl: CVAE, batch) -> torch.Tensor:
            logits, mu, logvar = mdl(*batch)
            return cvae_loss(logits, batch[0], mu, logvar, cfg.beta)

        vx, vc = x_all[va[0]], c_all[va[1]]

        def validate(mdl: CVAE) -> float:
            save_preview(mdl)
            if not len(vx):
                return 0.0
            logits, mu, logvar = mdl(vx, vc)
            return -float(cvae_loss(logits, vx, mu, logvar, 1.0))
        tc, extra = cfg.train, None
    else:
        betas = cfg.train.betas or GAN_BETAS
        extra = {"disc": discriminator_optimizer(model, cfg.train.lr, betas)}
        step = _gan_step(extra["disc"])
        counter = {"n": 0}

        def validate(mdl: CondGAN) -> float:
            save_preview(mdl)
            counter["n"] += 1
            return float(len(list(samples_dir.glob("epoch_*.png"))))  # keep the last epoch
        tc = cfg.train.model_copy(update={"patience": cfg.train.epochs, "betas": betas})
    tc = tc.model_copy(update={"progress": cfg.train.progress and progress})
    res = fit_loop(model, step, batches, validate, tc, run_dir=out, resume=resume,
                   desc=f"fit {cfg.model}", generator=gen, threads=cfg.threads,
                   extra_optimizers=extra)
    model.eval()
    if cfg.model == "gan":
        spectral_norm_discriminator(model, False)
    for p in model.parameters():
        p.requires_grad_(True)
    metrics = gd.score(model, data, kind, cfg, out, progress)
    result = {"model": cfg.model, "condition": cfg.condition, "size": cfg.size,
              "channels": int(data.images.shape[1]), "metric_kind": kind, "metrics": metrics,
              "train_seconds": round(res.seconds, 2), "epochs_run": res.epochs_run,
              "best_epoch": res.best_epoch, "n_train_pairs": int(len(tri)),
              "params": int(sum(p.numel() for p in model.parameters()))}
    _save(out, cfg, model, data)
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=1))
    for f in ("checkpoint.pt",):
        (out / f).unlink(missing_ok=True)
    RunFolder(out).finish()
    return result


def _save(out: Path, cfg: GenerateConfig, model, data: "gd.GenData") -> None:
    run = RunFolder(out)
    run.save_weights(model.state_dict())
    write_splits(out / "splits.csv", data.ids, data.splits)
    run.write_config("generate", json.loads(cfg.model_dump_json()),
                     {cfg.condition: {"name": data.encoder_name, "id": data.encoder_id}},
                     model=model.spec, condition=cfg.condition)


def format_generate_metrics(res: dict) -> str:
    """Metrics as printed by the CLI."""
    lines = [f"{res['model']} conditioned on {res['condition']} ({res['size']}x{res['size']}, "
             f"{res['n_train_pairs']} train pairs, {res['epochs_run']} epochs, "
             f"{res['train_seconds']:.0f} s)"]
    for k, v in res["metrics"].items():
        lines.append(f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}")
    return "\n".join(lines)


__all__ = ["GenerateConfig", "fit_generate", "format_generate_metrics"]
