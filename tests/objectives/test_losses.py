"""Alignment losses on real paired features (MNIST digits) plus hand-worked tiny cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polymodal.nn.heads import LinearHead
from polymodal.objectives.losses import (loss_names, contrastive_loss, get_loss, infonce_loss,
                                    loss_params, siglip_loss, triplet_loss)
from polymodal.core.errors import UsageError
from polymodal.metrics.scores import chance_retrieval, retrieval_metrics_from_embeddings

PAIRED = ["infonce", "siglip", "triplet", "triplet-semihard", "contrastive"]


def _params(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v) for k, v in loss_params(name).items()}


def _call(name: str, a: torch.Tensor, b: torch.Tensor, **kw) -> torch.Tensor:
    return get_loss(name)(a, b, **_params(name), **kw)


@pytest.fixture(scope="module")
def views(mnist) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of 256 real digits in one 64-d space: a fixed random projection of the image,
    and the same projection of a noisy, gamma-warped copy."""
    images, _ = mnist
    x = images[:256].reshape(256, -1)
    rng = np.random.default_rng(0)
    proj = rng.standard_normal((784, 64)) / 28
    noisy = np.sqrt(x) + 0.3 * rng.standard_normal(x.shape)
    a = (x - x.mean(0)) @ proj
    b = (noisy - noisy.mean(0)) @ proj
    return torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)


@pytest.mark.parametrize("name", loss_names())
def test_aligned_pairs_score_lower_than_shuffled(views, name):
    a, b = views
    perm = torch.randperm(len(b), generator=torch.Generator().manual_seed(1))
    aligned, shuffled = float(_call(name, a, b)), float(_call(name, a, b[perm]))
    assert np.isfinite(aligned) and aligned < shuffled


@pytest.mark.parametrize("name", loss_names())
def test_gradients_flow(views, name):
    a = views[0][:64].clone().requires_grad_(True)
    b = views[1][:64].clone().requires_grad_(True)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in loss_params(name).items()}
    get_loss(name)(a, b, **params).backward()
    for t in (a, b, *params.values()):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


@pytest.mark.parametrize("name", loss_names())
def test_training_linear_heads_reduces_loss_and_improves_retrieval(halves, name):
    """Left half of a digit -> right half: a few Adam steps on linear heads lower the held-out
    loss and raise held-out R@1 well above chance."""
    left, right, _ = halves
    torch.manual_seed(0)
    regression = name in ("mse", "cosine")  # regress the left half onto the right half
    ha = LinearHead(392, 392 if regression else 32, normalize=False)
    hb = None if regression else LinearHead(392, 32, normalize=False)
    params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in loss_params(name).items()}
    opt = torch.optim.Adam([*ha.parameters(), *(hb.parameters() if hb else []),
                            *params.values()], lr=1e-2)
    xa, xb = torch.tensor(left[:1500]), torch.tensor(right[:1500])
    ta, tb = torch.tensor(left[1500:]), torch.tensor(right[1500:])
    fn = get_loss(name)

    def held_out() -> tuple[float, float]:
        with torch.no_grad():
            ea, eb = ha(ta), (hb(tb) if hb else tb)
            loss = float(fn(ea[:256], eb[:256], **params))
        r1 = retrieval_metrics_from_embeddings(ea.numpy(), eb.numpy(), np.arange(len(ta)))["R@1"]
        return loss, r1

    loss0, r1_0 = held_out()
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        idx = torch.randperm(len(xa), generator=gen)[:256]
        loss = fn(ha(xa[idx]), hb(xb[idx]) if hb else xb[idx], **params)
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss1, r1_1 = held_out()
    chance = chance_retrieval(np.arange(len(ta)), n_targets=len(ta))["R@1"]
    assert loss1 < loss0
    assert r1_1 > r1_0 and r1_1 > 5 * chance


def test_infonce_hand_worked():
    eye = torch.eye(2)
    # logits = I (scale e^0 = 1): each row's CE is log(1 + e^-1), both directions alike
    assert float(infonce_loss(eye, eye, 0.0)) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    # the temperature is clamped at 100
    a, b = torch.randn(8, 4), torch.randn(8, 4)
    assert float(infonce_loss(a, b, 10.0)) == pytest.approx(float(infonce_loss(a, b, math.log(100))))


def test_infonce_pair_ids_treat_duplicates_as_positives(views):
    a, b = views[0][:32], views[1][:32]
    distinct = torch.arange(32)
    assert float(infonce_loss(a, b, 2.0, pair_ids=distinct)) == pytest.approx(
        float(infonce_loss(a, b, 2.0)), rel=1e-5)
    # rows 0..15 repeated: without ids each copy is a negative of its twin (loss >= ~ln 2)
    a2, b2 = torch.cat([a[:16], a[:16]]), torch.cat([b[:16], b[:16]])
    ids = torch.cat([torch.arange(16), torch.arange(16)])
    plain = float(infonce_loss(a2, b2, math.log(100)))
    multi = float(infonce_loss(a2, b2, math.log(100), pair_ids=ids))
    assert multi < plain and plain > math.log(2) - 1e-3
    # every pair-id-aware loss is lower when duplicates are not counted as negatives (SigLIP
    # with bias 0: at its usual -10 start every positive costs more than a negative)
    for name in PAIRED:
        kw = {"logit_bias": torch.tensor(0.0)} if name == "siglip" else {}
        with_ids = float(get_loss(name)(a2, b2, **{**_params(name), **kw}, pair_ids=ids))
        without = float(get_loss(name)(a2, b2, **{**_params(name), **kw}))
        # semi-hard mining never picks a twin (its similarity equals the positive's)
        assert with_ids <= without if name == "triplet-semihard" else with_ids < without


def test_siglip_hand_worked():
    x = torch.tensor([[1.0, 0.0]])
    expected = -math.log(1 / (1 + math.exp(-1.0)))  # z = 1, y = +1
    assert float(siglip_loss(x, x, 0.0, 0.0)) == pytest.approx(expected, rel=1e-6)


def test_triplet_hand_worked_and_mining_order(views):
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # sims [[1, .6], [0, .8]]; margin .5: a->b costs (.1, 0), b->a costs (0, .3)
    assert float(triplet_loss(a, b, margin=0.5)) == pytest.approx(0.1, abs=1e-6)
    x, y = views[0][:64], views[1][:64]
    hardest = float(triplet_loss(x, y, mining="hardest"))
    assert float(triplet_loss(x, y, mining="semihard")) <= hardest + 1e-6
    assert float(triplet_loss(x, y, mining="all")) <= hardest + 1e-6


def test_contrastive_perfect_pairs_far_negatives_is_zero():
    eye = torch.eye(4)  # orthogonal unit vectors: distance sqrt(2) > margin 1
    assert float(contrastive_loss(eye, eye, margin=1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(contrastive_loss(eye, eye, margin=2.0)) > 0


def test_bad_input_is_a_clear_error():
    with pytest.raises(UsageError, match="same shape"):
        infonce_loss(torch.zeros(3, 4), torch.zeros(2, 4), 1.0)
    with pytest.raises(UsageError, match="unknown loss 'nope'"):
        get_loss("nope")
    with pytest.raises(UsageError, match="mining"):
        triplet_loss(torch.zeros(3, 4), torch.zeros(3, 4), mining="random")
    with pytest.raises(UsageError, match="pair_ids"):
        infonce_loss(torch.zeros(3, 4), torch.zeros(3, 4), 1.0, pair_ids=torch.arange(2))
