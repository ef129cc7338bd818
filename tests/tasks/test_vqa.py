"""Visual question answering on Sort-of-CLEVR: the pixel encoder, the spatial fusions (film,
relation: per-image stem sharing gives the same outputs), grouped batches and ``--group-by``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.core.errors import UsageError
from polymodal.data.datasets import build_dataset
from polymodal.features.encoders.registry import build_encoder
from polymodal.nn.fusion import build_fusion
from polymodal.nn.fusion._spatial import coord_channels
from polymodal.tasks.classify.groups import grouped_order


@pytest.fixture(scope="module")
def soc(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vqa") / "soc"
    return build_dataset("sort-of-clevr", Path("."), out, seed=1, progress=False, n_images=30,
                         questions=12)


def test_pixels_encoder_keeps_the_image(soc):
    enc = build_encoder("pixels", modality="image")
    v = enc.encode(str(soc.parent / "images" / "soc_000000.png"), numpy=True)
    assert enc.dim == v.shape[0] == 3 * 75 * 75 and "size=75" in enc.id
    scene = json.loads((soc.parent / "scenes.json").read_text())["soc_000000"]
    red = next(o for o in scene if o["colour"] == "red")
    x, y = red["center"]
    img = v.reshape(3, 75, 75)
    assert img[:, y, x].tolist() == [1.0, 0.0, 0.0]
    assert build_encoder("pixels:20").dim == 1200
    with pytest.raises(UsageError, match="side"):
        build_encoder("pixels:2")


@pytest.mark.parametrize("name", ["film", "relation"])
def test_shared_stem_gives_the_same_outputs(name):
    torch.manual_seed(0)
    f = build_fusion(name, {"image": 3 * 20 * 20, "text": 8}, 6).eval()
    imgs = torch.rand(3, 1200)
    x = {"image": imgs[[0, 1, 0, 2, 1]], "text": torch.randn(5, 8)}
    together = f(x, None)
    alone = torch.cat([f({k: v[i:i + 1] for k, v in x.items()}, None) for i in range(5)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    assert together.shape == (5, 6)
    with pytest.raises(UsageError, match="pixels"):
        build_fusion(name, {"image": 1280, "text": 8}, 6)


class _PickCell(torch.nn.Module):
    """Attention logits that pick cell ``k`` of every image (the anchor is that cell)."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(*x.shape[:-1], 1)
        out[:, self.k] = 50.0
        return out


def test_relation_reads_positions_relative_to_the_anchor():
    """g's position input is each cell's refined position (its cell centre moved by at most
    half a cell) minus the anchor's, plus the squared distance; the refinement is learned."""
    torch.manual_seed(0)
    f = build_fusion("relation", {"image": 3 * 20 * 20, "text": 8}, 6).eval()
    side, k = f.inputs.side, 7
    f.att = _PickCell(k)
    torch.nn.init.normal_(f.offset.weight, std=3.0)
    seen = []
    f.g_rel.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    x = {"image": torch.rand(4, 1200), "text": torch.randn(4, 8)}
    before = f(x, None)
    rel = seen[-1]
    assert rel.shape == (4, side * side, 3)
    torch.testing.assert_close(rel[:, k, :2], torch.zeros(4, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(rel[..., 2], (rel[..., :2] ** 2).sum(-1))
    centres = coord_channels(side, side, rel).flatten(2)[0].T  # [n, 2]: x, y of each cell
    coarse = centres - centres[k]
    drift = (rel[..., :2] - coarse).abs()
    assert float(drift.max()) <= 2 * f.half_cell + 1e-6  # each end moves ≤ half a cell
    assert float(drift.max()) > 0.1 * f.half_cell  # the offsets do move the positions
    with torch.no_grad():
        f.offset.bias.add_(0.5)
    assert not torch.allclose(f(x, None), before)


def test_grouped_order_keeps_groups_together():
    groups = np.array(["a", "b", "c"] * 4, dtype=object)
    order = grouped_order(groups, torch.Generator().manual_seed(0)).numpy()
    assert sorted(order.tolist()) == list(range(12))
    runs = [groups[i] for i in order]
    assert sum(runs[i] != runs[i - 1] for i in range(1, 12)) == 2  # 3 contiguous blocks


def test_fit_film_with_group_by(soc, tmp_path, capsys):
    from polymodal.cli.main import main

    code = main(["fit", "classify", "--manifest", str(soc), "--fusion", "film",
                 "--encoders", "image=pixels:24", "--cache-dir", str(tmp_path / "cache"),
                 "--batch-by", "image_id", "--group-by", "question_type",
                 "--no-unimodal-heads", "--epochs", "2", "--fusion-options", "width=16",
                 "--fusion-options", "blocks=2", "--out", str(tmp_path / "run"), "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "question_type=relational" in printed and "question_type=non-relational" in printed
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    groups = metrics["test_by_group"]["question_type"]
    assert sum(g["n"] for g in groups.values()) == metrics["n_test"] == 3 * 12
    assert all(0 <= g["accuracy"] <= 1 for g in groups.values())
    assert main(["fit", "classify", "--manifest", str(soc), "--group-by", "nope",
                 "--out", str(tmp_path / "bad"), "-q"]) != 0
    err = capsys.readouterr().err
    assert "--group-by nope" in err and "no column 'nope'" in err
