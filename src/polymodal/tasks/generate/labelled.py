"""``metrics: labels`` of `polymodal.tasks.generate.fit`: conditional accuracy, IS and FID for
any labelled image set (not only digits), on EfficientNet-Lite0 features with a linear probe
trained here on the manifest's own labels (`polymodal.metrics.imagegen_labels`).

Costs are capped: the probe trains on at most ``PROBE_TRAIN`` real train images and the real
test set is at most ``TEST_CAP`` images (seeded subsets, counts reported), because every image
goes through EfficientNet-Lite0 at 224x224 (about 30 ms per image on one CPU core).
"""
from __future__ import annotations

from typing import Any

import numpy as np

PROBE_TRAIN = 1000
TEST_CAP = 1000


def label_classes(data: Any) -> list:
    """Distinct labels of the train images (None when fewer than 2: no probe possible)."""
    seen = {v for v, s in zip(data.labels, data.splits) if s == "train" and v is not None}
    return sorted(seen, key=lambda v: (str(type(v)), v)) if len(seen) >= 2 else None


def _subset(idx: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    return idx if len(idx) <= cap else np.sort(rng.permutation(idx)[:cap])


def score_labelled(model: Any, data: Any, cfg: Any, generate: Any, eval_conditions: Any
                   ) -> dict:
    """The ``labels`` metrics; ``generate(model, data, cond_idx, seed)`` draws images and
    ``eval_conditions(data, n, seed)`` picks the test conditions (from `..data`)."""
    from polymodal.core.errors import PolymodalError
    from polymodal.features.encoders.image import EfficientNetLite0Encoder
    from polymodal.metrics.imagegen import efficientnet_stats
    from polymodal.metrics.imagegen_labels import labelled_generation_metrics

    classes = set(label_classes(data) or [])
    labelled = np.array([v is not None and v in classes for v in data.labels])
    ci = eval_conditions(data, cfg.n_eval, cfg.train.seed)
    ci = ci[labelled[data.cond_image[ci]]]
    if not len(ci):
        raise PolymodalError("no test image has a label seen in training; use --metrics "
                             "efficientnet or none")
    fake = generate(model, data, ci, cfg.train.seed + 1)
    split = "test" if (data.splits == "test").any() else "val"
    rng = np.random.default_rng(cfg.train.seed)
    test = _subset(np.where((data.splits == split) & labelled)[0], TEST_CAP, rng)
    train = _subset(np.where((data.splits == "train") & labelled)[0], PROBE_TRAIN, rng)
    enc = EfficientNetLite0Encoder()
    ff, _ = efficientnet_stats(fake, enc)
    ft, _ = efficientnet_stats(data.images[test], enc)
    fr, _ = efficientnet_stats(data.images[train], enc)
    lab = np.array(data.labels, dtype=object)
    m = {"n_generated": int(len(ci)), "n_real_test": int(len(test))}
    m.update(labelled_generation_metrics(ff, list(lab[data.cond_image[ci]]), ft,
                                         list(lab[test]), fr, list(lab[train]),
                                         seed=cfg.train.seed))
    return m


__all__ = ["PROBE_TRAIN", "TEST_CAP", "label_classes", "score_labelled"]
