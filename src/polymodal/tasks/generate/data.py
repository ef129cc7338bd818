"""Data, pictures and scoring for `polymodal.tasks.generate.fit` (kept apart to stay readable)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from polymodal.core.splits import assign_splits, check_split_counts
from polymodal.core.errors import PolymodalError, UsageError


@dataclass
class GenData:
    """Images of usable rows and condition vectors (one per caption / clip)."""

    images: np.ndarray  # [N, C, S, S] float32 in [0, 1]
    splits: np.ndarray  # [N] split name per image
    labels: list  # [N] label per image (None when absent)
    cond: np.ndarray  # [M, D] float32
    cond_image: np.ndarray  # [M] image index of each condition vector
    encoder_name: str
    encoder_id: str
    skipped: int = 0
    ids: list[str] = field(default_factory=list)  # [N] manifest id per image

    def pairs(self, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(image index, condition index) of every pair in ``split``; ``limit`` caps the
        number of distinct images (the first ones)."""
        sel = np.where(self.splits[self.cond_image] == split)[0]
        if limit is not None:
            keep = np.unique(self.cond_image[sel])[:limit]
            sel = sel[np.isin(self.cond_image[sel], keep)]
        return self.cond_image[sel].astype(np.int64), sel.astype(np.int64)


def _load_one(path: Path, size: int, channels: int) -> np.ndarray | None:
    from PIL import Image

    from polymodal.data.loaders import load_image

    try:
        im = load_image(path)
    except PolymodalError:
        return None
    im = im.convert("L" if channels == 1 else "RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.LANCZOS)
    a = np.asarray(im, np.float32) / 255.0
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def load_data(cfg: Any, out: Path, progress: bool) -> GenData:
    """Encode (cached) the condition modality and load the images of rows that have both."""
    from polymodal.data.manifest import read_manifest
    from polymodal.features.encode import manifest_features

    man = read_manifest(cfg.manifest, columns=cfg.columns)
    if {"image", cfg.condition} <= set(man.modalities):  # else manifest_features says which
        check_split_counts(man.path, [r.split for r in man.records], man.ids,
                           np.array([r.image is not None and r.get(cfg.condition) is not None
                                     for r in man.records]),
                           f"an image and a {cfg.condition}", {"train": 2})
    fs = manifest_features(man, [cfg.condition], cfg.encoders, cfg.features, out,
                           cfg.cache_dir, progress, require=["image", cfg.condition],
                           backend=cfg.backend, precision=cfg.encoder_precision)
    vecs, rows = fs.vectors(cfg.condition)
    channels = cfg.channels or (1 if cfg.size <= 32 else 3)
    want = sorted(set(int(r) for r in rows))
    usable = np.zeros(len(man.records), bool)
    usable[want] = [man.records[r].image is not None for r in want]
    split = assign_splits([r.split for r in man.records], man.ids, usable)
    if cfg.limit is not None:  # load only what training can use, plus every val / test row
        train = [r for r in want if split[r] == "train"][:cfg.limit]
        want = sorted(set(train) | {r for r in want if split[r] != "train"})
    recs = [man.records[r] for r in want]
    with ThreadPoolExecutor(2) as pool:
        got = list(tqdm(pool.map(lambda r: _load_one(r.image, cfg.size, channels)
                                 if r.image is not None else None, recs),
                        total=len(recs), desc="load images", disable=not progress,
                        dynamic_ncols=True))
    keep = [i for i, g in enumerate(got) if g is not None]
    if not keep:
        raise PolymodalError(f"{cfg.manifest}: no row has both a usable image and a "
                             f"{cfg.condition}")
    where = {want[i]: j for j, i in enumerate(keep)}
    ci = [(k, where[int(r)]) for k, r in enumerate(rows) if int(r) in where]
    meta = fs.meta["modalities"][cfg.condition]
    return GenData(images=np.stack([got[i] for i in keep]),
                   splits=np.array([split[want[i]] for i in keep]),
                   labels=[recs[i].label for i in keep],
                   cond=np.asarray(vecs, np.float32)[[k for k, _ in ci]],
                   cond_image=np.array([j for _, j in ci], np.int64),
                   encoder_name=meta.get("name") or meta["encoder"].split("|")[0],
                   encoder_id=meta["encoder"], skipped=len(recs) - len(keep),
                   ids=[recs[i].id for i in keep])


def digit_labels(data: GenData) -> np.ndarray | None:
    """Integer labels 0-9 for every image, or None when the labels are not digits."""
    try:
        y = np.array([int(v) for v in data.labels])
    except (TypeError, ValueError):
        return None
    return y if y.min() >= 0 and y.max() <= 9 else None


def metric_kind(cfg: Any, data: GenData) -> str:
    """Which metrics apply: digits (grey images with digit labels), labels (any other set
    with at least 2 labels among its train images), efficientnet (unlabelled RGB), none."""
    from polymodal.tasks.generate.labelled import label_classes

    if cfg.metrics != "auto":
        if cfg.metrics == "digits" and (digit_labels(data) is None or data.images.shape[1] != 1):
            raise UsageError("metrics 'digits' needs grey images with labels 0-9")
        if cfg.metrics == "labels" and label_classes(data) is None:
            raise UsageError("metrics 'labels' needs at least 2 distinct labels among the "
                             "train images")
        return cfg.metrics
    if data.images.shape[1] == 1 and digit_labels(data) is not None:
        return "digits"
    if label_classes(data) is not None:
        return "labels"
    return "efficientnet" if data.images.shape[1] == 3 else "none"


def preview_conditions(data: GenData) -> np.ndarray:
    """Condition indices shown in the per-epoch sample grid: one per digit, or 8 captions."""
    y = digit_labels(data)
    order = [s for s in ("test", "val", "train") if (data.splits == s).any()]
    ids = np.concatenate([np.where(data.splits[data.cond_image] == s)[0] for s in order])
    if y is not None:
        first: dict[int, int] = {}
        for k in ids:
            first.setdefault(int(y[data.cond_image[k]]), int(k))
        return np.array([first[d] for d in sorted(first)])
    seen, out = set(), []
    for k in ids:
        key = data.cond[k].tobytes()
        if key not in seen:
            seen.add(key)
            out.append(int(k))
        if len(out) == 8:
            break
    return np.array(out)


def save_grid(images: np.ndarray, path: Path, cols: int = 8, min_tile: int = 56) -> Path:
    """Save images ``[N, C, S, S]`` in [0, 1] as one PNG (tiles scaled up to ``min_tile``)."""
    from PIL import Image

    from polymodal.core.atomic import atomic_path

    n, c, s, _ = images.shape
    scale = max(1, int(np.ceil(min_tile / s)))
    rows, pad = int(np.ceil(n / cols)), 2
    canvas = np.full((rows * (s + pad) + pad, cols * (s + pad) + pad, 3), 128, np.uint8)
    for i, im in enumerate(np.clip(images, 0, 1)):
        tile = (im.transpose(1, 2, 0) * 255).round().astype(np.uint8)
        r, q = divmod(i, cols)
        canvas[pad + r * (s + pad): pad + r * (s + pad) + s,
               pad + q * (s + pad): pad + q * (s + pad) + s] = tile if c == 3 else tile
    img = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale),
                                         Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def check_prompt(encoder: Any, text: str) -> None:
    """Refuse a prompt longer than the text encoder reads (it would be cut silently)."""
    count, limit = getattr(encoder, "count_tokens", None), getattr(encoder, "max_length", None)
    if not str(text).strip():
        raise UsageError("the prompt is empty")
    if count is not None and limit:
        n = count(str(text))
        if n > limit:
            raise UsageError(f"the prompt is {n} tokens long; the {encoder.name} text encoder "
                             f"reads at most {limit}")


@torch.no_grad()
def _generate(model: Any, data: GenData, cond_idx: np.ndarray, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(0, len(cond_idx), 256):
        c = torch.from_numpy(data.cond[cond_idx[s:s + 256]])
        out.append(model.sample(c, torch.randn(len(c), model.latent_dim, generator=g)).numpy())
    return np.concatenate(out)


def _eval_conditions(data: GenData, n: int, seed: int) -> np.ndarray:
    split = "test" if (data.splits == "test").any() else "val"
    _, ci = data.pairs(split)
    if not len(ci):
        raise PolymodalError(f"no {split} pairs to evaluate on")
    rng = np.random.default_rng(seed)
    return ci[rng.permutation(len(ci))[:n]] if len(ci) >= n else ci[rng.integers(0, len(ci), n)]


def _digit_classifier(cfg: Any, data: GenData, out: Path, progress: bool):
    from polymodal.metrics.imagegen import load_classifier, save_classifier

    if cfg.classifier:
        return load_classifier(cfg.classifier)[0]
    y = digit_labels(data)
    tr, va = data.splits == "train", data.splits == "val"
    if not va.any():
        va = data.splits == "test"
    epochs = int(np.clip(np.ceil(300 * 128 / max(1, tr.sum())), 4, 40))  # >= ~300 steps
    clf = fit_digit_classifier(data.images[tr], y[tr], data.images[va], y[va], epochs=epochs,
                               seed=cfg.train.seed, progress=progress)
    save_classifier(clf, out / "digit_classifier.safetensors", list(range(10)))
    return clf


def score(model: Any, data: GenData, kind: str, cfg: Any, out: Path, progress: bool) -> dict:
    """The metrics of `polymodal.tasks.generate.fit` (see its docstring for their names)."""
    from polymodal.metrics.imagegen import classifier_outputs, efficientnet_stats, fid, \
        inception_score

    if kind == "none":
        return {}
    if kind == "labels":
        from polymodal.tasks.generate.labelled import score_labelled

        return score_labelled(model, data, cfg, _generate, _eval_conditions)
    ci = _eval_conditions(data, cfg.n_eval, cfg.train.seed)
    fake = _generate(model, data, ci, cfg.train.seed + 1)
    test = data.splits == ("test" if (data.splits == "test").any() else "val")
    real = data.images[test]
    rng = np.random.default_rng(cfg.train.seed)
    tr_idx = np.where(data.splits == "train")[0]
    ref = data.images[rng.permutation(tr_idx)[:len(ci)]]
    m: dict[str, Any] = {"n_generated": int(len(ci)), "n_real_test": int(len(real))}
    if kind == "digits":
        clf = _digit_classifier(cfg, data, out, progress)
        y = digit_labels(data)
        pf, ff = classifier_outputs(clf, fake)
        pr, fr = classifier_outputs(clf, real)
        pt, ft = classifier_outputs(clf, ref)
        m["conditional accuracy (DigitCNN, trained here)"] = float(
            (pf.argmax(1) == y[data.cond_image[ci]]).mean())
        m["IS (DigitCNN, trained here)"] = inception_score(pf)[0]
        m["FID (DigitCNN features, trained here)"] = fid(ff, fr)
        m["reference: DigitCNN accuracy on real test images"] = float(
            (pr.argmax(1) == y[test]).mean())
        m["reference: IS of real test images"] = inception_score(pr)[0]
        m["reference: FID real train vs real test"] = fid(ft, fr)
    else:
        ff, _ = efficientnet_stats(fake)
        fr, _ = efficientnet_stats(real)
        ft, _ = efficientnet_stats(ref)
        m["FID (EfficientNet-Lite0 pool features)"] = fid(ff, fr)
        m["reference: FID real train vs real test (EfficientNet-Lite0 pool features)"] = \
            fid(ft, fr)
    return m


def fit_digit_classifier(images: np.ndarray, labels: np.ndarray, val_images: np.ndarray,
                         val_labels: np.ndarray, epochs: int = 5, seed: int = 0,
                         progress: bool = False) -> Any:
    """Train a `DigitCNN` on ``images [N, C, S, S]`` in [0, 1] and integer labels (0..K-1),
    keeping the epoch with the best validation accuracy. Small random shifts augment."""
    import torch
    import torch.nn.functional as F

    from polymodal.metrics.imagegen import DigitCNN, predict_proba
    from polymodal.train.config import TrainConfig
    from polymodal.train.loop import fit_loop, seed_everything

    if len(images) < 2 or len(val_images) < 1:
        raise PolymodalError("the digit classifier needs training and validation images")
    gen = seed_everything(seed)
    x, y = torch.from_numpy(np.asarray(images, np.float32)), torch.from_numpy(
        np.asarray(labels, np.int64))
    model = DigitCNN(int(max(labels.max(), val_labels.max())) + 1, x.shape[1], x.shape[2])

    def batches(epoch: int):
        perm = torch.randperm(len(x), generator=gen)
        for s in range(0, len(perm), 128):
            idx = perm[s:s + 128]
            dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
            yield torch.roll(x[idx], (dx, dy), (2, 3)), y[idx]

    def step(m: DigitCNN, batch) -> torch.Tensor:
        return F.cross_entropy(m(batch[0]), batch[1])

    def validate(m: DigitCNN) -> float:
        return float((predict_proba(m, val_images).argmax(1) == val_labels).mean())

    cfg = TrainConfig(epochs=epochs, lr=2e-3, patience=epochs, seed=seed, progress=progress)
    fit_loop(model, step, batches, validate, cfg, desc="fit digit classifier")
    return model.eval()
