"""No-regret fusion (``unimodal_heads``) on the tiny real audio-visual digits set (MNIST pixels
+ FSDD spectra, split by speaker): with a modality missing at test the model must do at least
as well as its own unimodal head, the mixing must follow the validation scores, and a broken
fused path must make the calibration fall back to the unimodal heads."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_classification import build_avdigits_tiny, make_config

from polymodal.metrics.robustness import mask_missing
from polymodal.tasks.classify import no_regret as nr
from polymodal.tasks.classify.fit import _loss, fit_classifier
from polymodal.tasks.classify.loaded import load_classifier

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def run(shared_data, tmp_path_factory):
    avd = build_avdigits_tiny(shared_data, tmp_path_factory.getbasetemp() / "avdigits-tiny")
    out = tmp_path_factory.mktemp("no-regret") / "early"
    res = fit_classifier(make_config(avd, "early", modality_dropout=0.3, unimodal_heads=True),
                         out, progress=False)
    return out, res


def _acc(clf, data, mask):
    return float(np.mean(clf.outputs(data.x, mask).argmax(1) == data.y))


def _head_acc(clf, data, mask, modality):
    j = 2 + clf.modalities.index(modality)
    cands = nr._outputs(clf.model, data.x, mask)
    rows = mask[:, clf.modalities.index(modality)]
    return float(np.mean(cands[rows, j].argmax(1) == data.y[rows])), rows


def test_missing_modality_is_no_worse_than_its_unimodal_head(run):
    out, res = run
    assert set(res["no_regret_choice"]) == {"audio", "image", "audio+image"}
    assert set(res["component_val_scores"]) == {"fused", "head:audio", "head:image"}
    clf = load_classifier(out)
    test = clf.data().select("test")
    for missing, kept in (("audio", "image"), ("image", "audio")):
        mask = mask_missing(test.mask, clf.modalities.index(missing), 1.0)
        head, rows = _head_acc(clf, test, mask, kept)
        got = float(np.mean(clf.outputs(test.x, mask)[rows].argmax(1) == test.y[rows]))
        if res["no_regret_choice"][kept] == f"unimodal:{kept}":
            assert got == head  # the mixing took exactly the head's path
        else:  # val preferred the fused / ensemble path; on test it must not lose to the head
            assert got >= head - 0.02, (missing, got, head)
    # both present: the model is far above the weaker head (fusion still helps)
    weaker = min(_head_acc(clf, test, test.mask, m)[0] for m in clf.modalities)
    assert _acc(clf, test, test.mask) > weaker + 0.03


def test_choice_is_the_best_candidate_on_val(run):
    out, _ = run
    clf = load_classifier(out)
    val = clf.data().select("val")
    names = clf.model.candidate_names()
    for pattern, chosen in clf.model.choices().items():
        present = np.array([m in pattern.split("+") for m in clf.modalities])
        rows = val.mask[:, present].all(1)
        sim = np.broadcast_to(present, (int(rows.sum()), len(present))).copy()
        cands = nr._outputs(clf.model, {m: v[rows] for m, v in val.x.items()}, sim)
        allowed = [0, 1] + [2 + j for j in range(len(present)) if present[j]]
        per = {names[c]: nr.row_scores("classification", cands[:, c], val.y[rows])
               for c in allowed}
        lone = [m for m in clf.modalities if m in pattern.split("+")]
        default = f"unimodal:{lone[0]}" if len(lone) == 1 else "fused"
        best = max(per, key=lambda k: per[k].mean())
        # the default path, unless the best candidate beats it significantly on val
        expect = best if nr.significantly_better(per[best], per[default]) else default
        assert chosen == expect, (pattern, {k: v.mean() for k, v in per.items()})
        # and the model's own output for that pattern is the chosen candidate
        got = clf.outputs({m: v[rows] for m, v in val.x.items()}, sim)
        assert np.allclose(got, cands[:, names.index(chosen)], atol=1e-5)


def test_broken_fused_path_falls_back_to_the_heads(run):
    out, _ = run
    clf = load_classifier(out)
    head = clf.model.fused.head[-1]
    with torch.no_grad():  # plant a useless fused path: constant logits
        head.weight.zero_()
        head.bias.zero_()
    val, test = clf.data().select("val"), clf.data().select("test")
    choice = nr.calibrate(clf.model, "classification", _loss, val.x, val.mask, val.y)
    assert "fused" not in choice.values(), choice  # the constant path is never kept
    both = float(np.mean(clf.outputs(test.x, test.mask).argmax(1) == test.y))
    assert both > 0.3  # far above the constant fused path (at most the majority class)
    mask = mask_missing(test.mask, clf.modalities.index("audio"), 1.0)
    head_acc, rows = _head_acc(clf, test, mask, "image")
    got = float(np.mean(clf.outputs(test.x, mask)[rows].argmax(1) == test.y[rows]))
    # the ensemble with a constant fused output has the head's argmax: the same accuracy
    assert got == pytest.approx(head_acc) and head_acc > 0.3


def _default_model(dims, n_out):
    from polymodal.tasks.classify.fit import build_classifier
    torch.manual_seed(0)
    return build_classifier("weighted", dims, n_out, hidden=16, dropout=0.0, no_regret=True)


def _batch(n=48, dims=None, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(n, d, generator=g) for m, d in dims.items()}
    real = torch.rand(n, 2, generator=g) > 0.3
    real[:, 0] |= ~real[:, 1]  # every row has a modality
    y = torch.randint(0, 4, (n,), generator=g)
    return x, real, y


def test_head_loss_is_the_mean_over_rows_that_have_the_modality():
    """The masked mean of the step loss equals the loss of the kept rows alone (indexing)."""
    dims = {"audio": 5, "image": 7}
    model = _default_model(dims, 4)
    x, real, y = _batch(dims=dims)
    got = nr.step_loss(model, "classification", _loss, x, real, real, y, distill=0.3)
    want = _loss("classification", model.fused(x, real), y)
    teacher = torch.log_softmax(model.fused(x, real).detach(), 1)
    for j, m in enumerate(model.names):
        keep = real[:, j]
        h = model.heads[m](x, real)[keep]
        kl = torch.nn.functional.kl_div(torch.log_softmax(h, 1), teacher[keep], log_target=True,
                                        reduction="batchmean")
        want = want + 0.7 * _loss("classification", h, y[keep]) + 0.3 * kl
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    none = real.clone()
    none[:, 1] = False  # a modality absent from every row adds nothing (not NaN)
    assert torch.isfinite(nr.step_loss(model, "classification", _loss, x, none, none, y))


@pytest.mark.timeout(300)
def test_default_classifier_step_compiles_as_one_graph():
    """`--compile`: the default model (weighted fusion + unimodal heads + distillation) is
    captured whole (no graph break, no fallback) and trains as the eager step does."""
    from polymodal.train.loop import clip_grad_norm
    from polymodal.train.step import CompiledStep
    dims = {"audio": 5, "image": 7}
    eager, comp = _default_model(dims, 4), _default_model(dims, 4)

    def step_loss(m, batch):
        x, real, y = batch
        return nr.step_loss(m, "classification", _loss, x, real, real, y, distill=0.3)

    opt_e = torch.optim.AdamW(eager.parameters(), lr=0.01, fused=True)
    opt_c = torch.optim.AdamW(comp.parameters(), lr=0.01, fused=True)
    step = CompiledStep(comp, step_loss, opt_c, 1.0, "fp32")
    for s in range(4):
        batch = _batch(dims=dims, seed=10 + s)
        loss = step_loss(eager, batch)
        opt_e.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(eager.parameters(), 1.0)
        opt_e.step()
        assert step(batch) == pytest.approx(float(loss.detach()), rel=1e-5)
    assert not step.failed
    for (name, a), b in zip(eager.named_parameters(), comp.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    comp.eval()  # eager forwards still keep the fusion's weights for explanations
    with torch.no_grad():
        comp.fused(_batch(dims=dims)[0], None)
    assert comp.fused.fusion.last_weights.shape == (48, 2)
