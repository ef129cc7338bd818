"""Unit behaviour of every fusion: shapes, masking, gradients, attention weights, errors."""
from __future__ import annotations

import pytest
import torch

from polymodal.core.errors import UsageError
from polymodal.nn.fusion import FUSIONS, build_fusion, modality_dropout

DIMS2 = {"image": 12, "audio": 7}
DIMS3 = {"image": 12, "audio": 7, "text": 9}
# (name, options) variants covering each module's distinct code paths
VARIANTS = [
    ("early", {}),
    ("weighted", {}),
    ("weighted", {"alphas": "fixed"}),
    ("late", {"combine": "mean"}),
    ("late", {"combine": "weighted"}),
    ("late", {"combine": "stack"}),
    ("attention", {}),
    ("gated", {}),
    ("tensor", {"proj_dim": 4}),
    ("lowrank", {"rank": 3}),
    ("cross-attention", {}),
    ("cross-attention", {"cls_token": False}),
]
WEIGHTED_VARIANTS = [v for v in VARIANTS if v[0] in ("weighted", "attention", "gated",
                                                      "cross-attention")
                     or v[1].get("combine") == "weighted"]


def _ids(v):
    return v[0] + "".join(f"-{k}={val}" for k, val in v[1].items())


def _build(variant, dims, out_dim=5):
    name, opts = variant
    opts = dict(opts)
    if opts.get("alphas") == "fixed":
        opts["alphas"] = {n: float(i + 1) for i, n in enumerate(sorted(dims))}
    torch.manual_seed(0)
    return build_fusion(name, dims, out_dim, **opts)


def _features(dims, batch=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(batch, d, generator=g) for n, d in dims.items()}


def _mixed_mask(m, batch=6):
    rows = [[True] * m, [i != 0 for i in range(m)], [i == m - 1 for i in range(m)],
            [i == 0 for i in range(m)], [i != m - 1 for i in range(m)], [True] * m]
    return torch.tensor(rows[:batch])


def test_table_has_all_methods():
    assert set(FUSIONS) == {"early", "weighted", "late", "attention", "gated", "tensor",
                            "lowrank", "cross-attention", "film", "relation"}


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
@pytest.mark.parametrize("dims", [DIMS2, DIMS3], ids=["2mod", "3mod"])
def test_shapes(variant, dims):
    f = _build(variant, dims, out_dim=5)
    assert f.out_dim == 5
    assert isinstance(f.produces_logits, bool)
    y = f(_features(dims, batch=4), None)
    assert y.shape == (4, 5) and torch.isfinite(y).all()
    y = f(_features(dims, batch=6), _mixed_mask(len(dims)))
    assert y.shape == (6, 5) and torch.isfinite(y).all()


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_missing_modality_features_do_not_matter(variant):
    f = _build(variant, DIMS3).eval()
    feats = _features(DIMS3)
    mask = _mixed_mask(3)
    y0 = f(feats, mask)
    names = sorted(DIMS3)
    for j, n in enumerate(names):
        changed = dict(feats)
        garbage = torch.randn_like(feats[n]) * 100
        garbage[0, 0] = float("nan")
        garbage[1, 1] = float("inf")
        # only rows where modality n is missing get garbage
        changed[n] = torch.where(mask[:, j:j + 1], feats[n], garbage)
        y1 = f(changed, mask)
        torch.testing.assert_close(y1, y0)
    # ... while changing a *present* modality does change the output of its rows
    changed = dict(feats)
    changed[names[2]] = torch.randn_like(feats[names[2]])
    assert not torch.allclose(f(changed, mask)[0], y0[0])


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_single_modality_row_and_omitted_key(variant):
    f = _build(variant, DIMS3).eval()
    feats = _features(DIMS3, batch=3)
    only_text = torch.tensor([[False, False, True]] * 3)  # sorted: audio, image, text
    y = f(feats, only_text)
    assert torch.isfinite(y).all()
    # leaving the missing modalities out of the dict is the same as masking them
    y2 = f({"text": feats["text"]}, None)
    torch.testing.assert_close(y2, y)
    # and different text gives a different output
    assert not torch.allclose(f({"text": torch.randn_like(feats["text"])}, None), y)


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_gradients_reach_every_parameter(variant):
    f = _build(variant, DIMS3).eval()
    feats = _features(DIMS3, batch=6)
    y = f(feats, _mixed_mask(3))
    (y * torch.randn_like(y)).sum().backward()
    for name, p in f.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("variant", WEIGHTED_VARIANTS, ids=_ids)
def test_weights_sum_to_one_over_present(variant):
    f = _build(variant, DIMS3).eval()
    mask = _mixed_mask(3)
    f(_features(DIMS3), mask)
    w = f.last_weights
    assert w.shape == mask.shape
    assert torch.all(w[~mask] == 0)
    assert torch.all(w >= 0)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(mask.shape[0]))


def test_fixed_alphas_renormalised():
    f = build_fusion("weighted", DIMS2, 4, alphas={"image": 0.7, "audio": 0.3})
    mask = torch.tensor([[True, True], [False, True], [True, False]])  # audio, image
    f(_features(DIMS2, batch=3), mask)
    expected = torch.tensor([[0.3, 0.7], [0.0, 1.0], [1.0, 0.0]])
    torch.testing.assert_close(f.last_weights, expected)


def test_cross_attention_exposes_last_layer_attention():
    f = _build(("cross-attention", {}), DIMS3).eval()
    mask = _mixed_mask(3)
    f(_features(DIMS3), mask)
    a = f.last_attention
    assert a.shape == (6, 4, 4)  # CLS + 3 modality tokens
    torch.testing.assert_close(a.sum(-1), torch.ones(6, 4))
    assert torch.all(a[:, :, 1:][~mask.unsqueeze(1).expand(-1, 4, -1)] == 0)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UsageError) as e:
        build_fusion("concat", DIMS2, 4)
    for name in FUSIONS:
        assert name in str(e.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "late", "combine": "median"}, "combine"),
    ({"name": "tensor", "proj_dim": 64, "max_product": 1000}, "exceeds"),
    ({"name": "early", "hiden": 3}, "unknown option 'hiden'.*did you mean 'hidden'"),
    ({"name": "weighted", "alphas": {"image": 1.0}}, "alphas"),
    ({"name": "cross-attention", "d_model": 10, "heads": 4}, "divisible"),
])
def test_bad_options_raise_usage_error(kwargs, match):
    kwargs = dict(kwargs)
    name = kwargs.pop("name")
    with pytest.raises(UsageError, match=match):
        build_fusion(name, DIMS2, 4, **kwargs)


def test_bad_inputs_raise_usage_error():
    f = build_fusion("early", DIMS2, 4)
    with pytest.raises(UsageError, match="at least 2"):
        build_fusion("early", {"image": 3}, 4)
    with pytest.raises(UsageError, match="image"):
        f({"image": torch.randn(3, 5), "audio": torch.randn(3, 7)}, None)
    with pytest.raises(UsageError, match="unknown modalities"):
        f({"image": torch.randn(3, 12), "video": torch.randn(3, 7)}, None)
    with pytest.raises(UsageError, match="mask"):
        f(_features(DIMS2, batch=3), torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(UsageError, match="no features were given"):
        f({"image": torch.randn(3, 12)}, torch.ones(3, 2, dtype=torch.bool))


def test_modality_dropout_never_empties_a_row():
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(2000, 3, dtype=torch.bool)
    mask[:500, 0] = False
    mask[1990:] = False  # rows with nothing stay empty
    out = modality_dropout(mask, 0.5, generator=g)
    assert out.shape == mask.shape and out.dtype == torch.bool
    assert not torch.any(out & ~mask)  # never adds a modality
    assert torch.all(out[:1990].any(dim=1))
    assert not out[1990:].any()
    dropped = (mask & ~out).sum().item() / mask.sum().item()
    assert 0.3 < dropped < 0.6
    all_drop = modality_dropout(mask, 1.0, generator=g)
    assert torch.all(all_drop[:1990].sum(dim=1) == 1)
    assert torch.equal(modality_dropout(mask, 0.0), mask)
    with pytest.raises(UsageError):
        modality_dropout(mask, 1.5)
