"""Projection heads: shapes, normalisation, rebuild from spec, clear errors."""
from __future__ import annotations

import pytest
import torch

from polymodal.nn.heads import LinearHead, MLPHead, build_head
from polymodal.core.errors import UsageError


@pytest.mark.parametrize("kind,kw", [("linear", {}), ("mlp", {"hidden": 16, "dropout": 0.0})])
def test_heads_map_and_normalise(kind, kw):
    head = build_head(kind, 12, 5, **kw)
    y = head(torch.randn(7, 12))
    assert y.shape == (7, 5)
    assert torch.allclose(y.norm(dim=-1), torch.ones(7), atol=1e-5)
    raw = build_head(kind, 12, 5, normalize=False, **kw)(torch.randn(7, 12) * 10)
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(7), atol=1e-2)


def test_spec_rebuilds_same_architecture():
    head = MLPHead(10, 4, hidden=8, dropout=0.2)
    clone = build_head(**head.spec)
    clone.load_state_dict(head.state_dict())
    head.eval()
    clone.eval()
    x = torch.randn(3, 10)
    assert torch.equal(head(x), clone(x))
    assert LinearHead(3, 2).spec == {"kind": "linear", "in_dim": 3, "out_dim": 2,
                                     "normalize": True}


def test_head_errors():
    with pytest.raises(UsageError, match="unknown head 'conv'"):
        build_head("conv", 3, 2)
    with pytest.raises(UsageError, match="unknown option .hidden. for head .linear."):
        build_head("linear", 3, 2, hidden=4)
    with pytest.raises(UsageError, match="dropout"):
        MLPHead(3, 2, dropout=1.5)
    with pytest.raises(UsageError, match=">= 1"):
        LinearHead(0, 2)
