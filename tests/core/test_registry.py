"""The registry helper (core/registry.py) and the project's registries built with it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from polymodal.core.errors import UsageError
from polymodal.core.registry import Entry, Registry, closest

REPO = Path(__file__).resolve().parents[2]

# a registry over the standard library: real targets, no project code involved
WRAPPERS = Registry("wrapper", [
    Entry("wrapper", "textwrap:TextWrapper", "wraps paragraphs", {"kind": "class"}),
    Entry("short", "textwrap:shorten", "one line, cut", {"kind": "function"}),
    Entry("short-dots", "textwrap:shorten", "one line, cut, with dots",
          preset={"placeholder": "..."}),
    Entry("dedent", "textwrap:dedent", "remove common indentation"),
], fixed=("text",))


def test_names_lookup_and_rows():
    assert WRAPPERS.names() == ["wrapper", "short", "short-dots", "dedent"]
    assert list(WRAPPERS) == WRAPPERS.names() and len(WRAPPERS) == 4
    assert "short" in WRAPPERS and "nope" not in WRAPPERS and 3 not in WRAPPERS
    assert WRAPPERS.get("short").description == "one line, cut"
    assert WRAPPERS["wrapper"].metadata == {"kind": "class"}
    assert WRAPPERS.rows()[0] == ("wrapper", "wraps paragraphs", {"kind": "class"})
    import textwrap

    assert WRAPPERS.load("wrapper") is textwrap.TextWrapper


def test_unknown_name_says_did_you_mean_and_lists_the_valid_names():
    with pytest.raises(UsageError) as e:
        WRAPPERS.get("wraper")
    assert str(e.value) == ("unknown wrapper 'wraper'; did you mean 'wrapper'? "
                            "(valid: wrapper, short, short-dots, dedent)")
    with pytest.raises(UsageError) as e:
        WRAPPERS.load("zzz")
    assert str(e.value) == "unknown wrapper 'zzz'; valid: wrapper, short, short-dots, dedent"
    err = WRAPPERS.error("zzz", extra=["plain:<width>"])
    assert str(err).endswith("dedent, plain:<width>")
    assert closest("batchsize", ["batch_size", "beta"]) == ["batch_size"]


def test_options_come_from_the_signature_minus_fixed_and_preset():
    assert WRAPPERS.options("short") == ["width"]  # text is fixed, **kwargs is no option
    assert WRAPPERS.options("short-dots") == ["width"]
    assert WRAPPERS.options("dedent") == []
    opts = WRAPPERS.options("wrapper")  # a class: its __init__ without self
    assert opts[:2] == ["width", "initial_indent"] and "placeholder" in opts


def test_build_applies_the_preset_and_checks_options():
    text = "The quick brown fox jumps over the lazy dog"
    assert WRAPPERS.build("short", text, width=20) == "The quick [...]"
    assert WRAPPERS.build("short-dots", text, width=20) == "The quick brown..."
    assert WRAPPERS.build("wrapper", width=10).wrap(text)[0] == "The quick"
    with pytest.raises(UsageError) as e:
        WRAPPERS.build("wrapper", widht=10)
    assert str(e.value).startswith("unknown option 'widht' for wrapper 'wrapper'; did you mean "
                                   "'width'? (valid options: width, ")
    with pytest.raises(UsageError, match=r"unknown options 'a', 'b' for wrapper 'dedent' "
                                         r"\(valid options: none\)"):
        WRAPPERS.build("dedent", "  x", a=1, b=2)
    assert WRAPPERS.build("dedent", text="  x\n  y") == "x\ny"  # fixed names by keyword too


def test_registries_are_immutable_constants():
    assert not hasattr(WRAPPERS, "register")
    with pytest.raises(AttributeError):
        WRAPPERS.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        WRAPPERS._entries["x"] = Entry("x", "a:b", "")  # type: ignore[index]
    with pytest.raises(TypeError):
        WRAPPERS.get("short").metadata["kind"] = "x"  # type: ignore[index]
    with pytest.raises(ValueError, match="duplicate name 'a'"):
        Registry("k", [Entry("a", "m:x", ""), Entry("a", "m:y", "")])
    with pytest.raises(ValueError, match="module:attribute"):
        Entry("a", "textwrap.dedent", "")
    with pytest.raises(ImportError, match="textwrap:nope does not exist"):
        Registry("k", [Entry("a", "textwrap:nope", "")]).load("a")


def test_project_registries_import_no_torch_and_no_target():
    code = ("import sys\n"
            "from polymodal.features.encoders.registry import ENCODERS\n"
            "from polymodal.objectives.registry import ALIGNMENTS\n"
            "from polymodal.nn.registry import FUSIONS, HEADS, CAPTION_DECODERS, GENERATORS\n"
            "from polymodal.data.datasets import DATASETS\n"
            "import polymodal.features.encoders\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith("
            "('polymodal.nn.fusion', 'polymodal.objectives.losses', "
            "'polymodal.features.encoders.text', 'polymodal.data.datasets.fsdd'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- the project's tables
def test_fusion_table_is_the_one_behind_build_fusion():
    from polymodal.nn import fusion
    from polymodal.nn.registry import FUSIONS

    assert list(fusion.FUSIONS) == FUSIONS.names()
    assert all(fusion.FUSIONS[n] is FUSIONS.load(n) for n in FUSIONS)
    assert FUSIONS.options("early") == ["hidden", "dropout", "norm"]
    with pytest.raises(UsageError, match="unknown option 'hiden' for fusion 'early'; did you "
                                         "mean 'hidden'"):
        fusion.build_fusion("early", {"image": 4, "audio": 3}, 8, hiden=3)
    with pytest.raises(UsageError, match="unknown fusion 'eraly'; did you mean 'early'"):
        fusion.build_fusion("eraly", {"image": 4, "audio": 3}, 8)


def test_alignment_table_matches_the_loss_functions():
    import torch

    from polymodal.objectives import losses
    from polymodal.objectives.registry import ALIGNMENTS

    kinds = {n: ALIGNMENTS[n].metadata["kind"] for n in ALIGNMENTS}
    assert [n for n, k in kinds.items() if k in ("loss", "regression")] == losses.loss_names()
    assert [n for n, k in kinds.items() if k == "method"] == ["cca", "dcca", "autoencoder"]
    assert set(ALIGNMENTS.options("triplet")) == {"margin", "mining", "pair_ids", "normalize"}
    assert set(ALIGNMENTS.options("triplet-semihard")) == {"margin", "pair_ids", "normalize"}
    assert ALIGNMENTS.options("mse") == [] and "pair_ids" in ALIGNMENTS.options("siglip")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    assert torch.equal(ALIGNMENTS.build("triplet-semihard", a, b, margin=0.3),
                       losses.get_loss("triplet-semihard")(a, b, margin=0.3))
    assert not torch.equal(ALIGNMENTS.build("triplet-semihard", a, b),
                           ALIGNMENTS.build("triplet", a, b))


def test_retrieval_step_passes_margin_and_pair_ids_by_signature():
    import torch

    from polymodal.objectives import losses
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import _loss_fn

    g = torch.Generator().manual_seed(1)
    q, t = torch.randn(12, 6, generator=g), torch.randn(12, 6, generator=g)
    ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5])

    class Model:  # what the step uses of AlignModel: embed() and the learnable scalars
        scalars = {"logit_scale": torch.tensor(2.0)}

        def embed(self, x, side, mask=None):
            return x

    def step(loss, margin=0.2, scalars=None):
        m = Model()
        m.scalars = scalars if scalars is not None else {}
        cfg = RetrievalConfig(manifest="m.jsonl", loss=loss, margin=margin)
        return _loss_fn(cfg)(m, (q, t, ids))

    assert torch.equal(step("triplet", 0.5), losses.triplet_loss(q, t, margin=0.5, pair_ids=ids))
    assert not torch.equal(step("triplet", 0.5), step("triplet", 0.1))
    assert torch.equal(step("contrastive", 0.7),
                       losses.contrastive_loss(q, t, margin=0.7, pair_ids=ids))
    assert torch.equal(step("infonce", scalars={"logit_scale": torch.tensor(2.0)}),
                       losses.infonce_loss(q, t, torch.tensor(2.0), pair_ids=ids))
    assert torch.equal(step("mse", 0.5), losses.mse_loss(q, t))  # takes neither


def test_heads_decoders_generators_match_their_modules():
    from polymodal.nn import generative, heads
    from polymodal.nn.registry import CAPTION_DECODERS, GENERATORS, HEADS

    assert HEADS.load("linear") is heads.LinearHead and HEADS.load("mlp") is heads.MLPHead
    assert heads.build_head("linear", 4, 2).spec["kind"] == "linear"
    assert HEADS.build("mlp", 5, 3, hidden=7).spec["hidden"] == 7
    dec = CAPTION_DECODERS.build("gru", 8, 20, hidden=16)
    assert dec.spec["kind"] == "gru" and dec.spec["hidden"] == 16
    assert type(dec) is generative.GRUCaptioner
    gen = GENERATORS.build("cvae", 1, 28, 10, latent_dim=4)
    assert gen.spec["kind"] == "cvae" and gen.spec["latent_dim"] == 4
    assert type(gen) is generative.CVAE
    assert "d_norm" in GENERATORS.options("gan") and "channels" not in GENERATORS.options("gan")


def test_encoder_metadata_matches_the_classes():
    from polymodal.features.encoders.registry import ENCODERS

    for name in ("minilm", "efficientnet-lite0", "whisper-tiny"):
        cls = ENCODERS.load(name)
        assert (cls.name, cls.modality, cls.dim) == (name, *(ENCODERS[name].metadata[k]
                                                              for k in ("modality", "dim")))
    logmel = ENCODERS.build("logmel")
    assert (logmel.modality, logmel.dim) == ("audio", ENCODERS["logmel"].metadata["dim"])
    assert ENCODERS.options("logmel")[:2] == ["sample_rate", "n_mels"]
    assert "model" not in ENCODERS.options("hf") and "device" in ENCODERS.options("hf")


def test_encoder_names_and_their_errors():
    from polymodal.features.encoders.registry import (build_encoder, check_encoder,
                                                      parse_encoder_name)

    assert parse_encoder_name("hf:/models/clip")[1] == "/models/clip"
    assert parse_encoder_name("minilm")[0].name == "minilm"
    cases = {("minlm", None): "unknown encoder 'minlm'; did you mean 'minilm'? (valid: "
                              "minilm, efficientnet-lite0, logmel, whisper-tiny, "
                              "hf:<model name or local dir>, frames:<image encoder>",
             ("hf", "text"): "encoder 'hf' needs an argument: hf:<model name or local dir>",
             ("logmel:x", None): "encoder 'logmel' takes no ':<argument>' (got 'logmel:x')",
             ("minilm", "image"): "encoder 'minilm' is a text encoder, not image",
             ("hf:org/m", None): "encoder 'hf:org/m' needs a modality (e.g. --encoder "
                                 "text=hf:org/m)",
             ("minilm", "video"): "encoder 'minilm' is a text encoder, not video",
             ("minilm", "smell"): "unknown modality 'smell' for encoder 'minilm'"}
    for (name, modality), message in cases.items():
        with pytest.raises(UsageError) as e:
            check_encoder(name, modality)
        assert str(e.value).startswith(message), str(e.value)
    with pytest.raises(UsageError, match="unknown option 'n_mel' for encoder 'logmel'; did you "
                                         "mean 'n_mels'"):
        build_encoder("logmel", n_mel=32)
    assert build_encoder("logmel", modality="audio", n_mels=32).dim == 128


def test_dataset_option_help_covers_the_builder_options():
    from polymodal.data.datasets import DATASETS, build_dataset, list_datasets

    for name in DATASETS:
        assert list(DATASETS[name].metadata["options"]) == DATASETS.options(name), name
    assert [n for n, _ in list_datasets()] == DATASETS.names()
    with pytest.raises(UsageError, match="unknown option 'seed' for dataset 'mnist'"):
        DATASETS.check_options("mnist", ["seed"])  # fixed: given by its own argument
    with pytest.raises(UsageError, match="unknown dataset 'mnsit'; did you mean 'mnist'"):
        build_dataset("mnsit", Path("."), Path("out"))
