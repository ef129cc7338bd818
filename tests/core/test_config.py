"""Strict configs: unknown keys and unknown registry names are one-line errors with a
did-you-mean, from Python, from YAML and from the command line."""
from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from polymodal.cli.main import main
from polymodal.core.config import load_config, validate_config
from polymodal.core.errors import UsageError
from polymodal.tasks.caption.config import CaptionConfig
from polymodal.tasks.classify.config import ClassifierConfig
from polymodal.tasks.generate.config import GenerateConfig
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.train.config import TrainConfig

CONFIGS = [RetrievalConfig, ClassifierConfig, CaptionConfig, GenerateConfig, TrainConfig]


def _yaml(tmp_path, doc: dict, name: str = "exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_config_rejects_unknown_keys(cls):
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        cls.model_validate({"manifest": "m.jsonl", "not_a_key": 1})


def test_python_construction_with_a_wrong_key_raises():
    with pytest.raises(ValidationError) as e:
        RetrievalConfig(epochs=2, lossfn="siglip")
    bad = {err["loc"][0] for err in e.value.errors() if err["type"] == "extra_forbidden"}
    assert bad == {"epochs", "lossfn"}  # epochs belongs under train:


def test_unknown_yaml_key_is_one_line_with_did_you_mean(tmp_path):
    path = _yaml(tmp_path, {"manifest": "m.jsonl", "batchsize": 64})
    with pytest.raises(UsageError) as e:
        load_config(RetrievalConfig, path, {})
    assert str(e.value) == f"unknown key 'batchsize' in {path}; did you mean 'batch_size'?"
    path = _yaml(tmp_path, {"manifest": "m.jsonl", "lossfn": "siglip"})
    with pytest.raises(UsageError, match=f"unknown key 'lossfn' in {path}; did you mean "
                                         f"'loss'"):
        load_config(RetrievalConfig, path, {})


def test_train_keys_are_suggested_where_they_belong(tmp_path):
    path = _yaml(tmp_path, {"manifest": "m.jsonl", "epochs": 3})
    with pytest.raises(UsageError) as e:
        load_config(ClassifierConfig, path, {})
    assert str(e.value) == f"unknown key 'epochs' in {path}; did you mean 'train.epochs'?"
    path = _yaml(tmp_path, {"manifest": "m.jsonl", "train": {"epoch": 3, "lr": 0.1}})
    with pytest.raises(UsageError) as e:
        load_config(CaptionConfig, path, {})
    assert str(e.value) == f"unknown key 'train.epoch' in {path}; did you mean 'train.epochs'?"
    path = _yaml(tmp_path, {"manifest": "m.jsonl", "train": 5})
    with pytest.raises(UsageError, match="'train' must be a mapping"):
        load_config(GenerateConfig, path, {})


def test_unknown_key_without_a_close_match_lists_the_valid_keys():
    with pytest.raises(UsageError) as e:
        validate_config(TrainConfig, {"zzzzzz": 1}, "run config r/config.yaml")
    msg = str(e.value)
    assert msg.startswith("unknown key 'zzzzzz' in run config r/config.yaml; valid keys: "
                          "epochs, lr, weight_decay, ")
    assert "\n" not in msg


def test_other_errors_keep_the_field_and_the_reason(tmp_path):
    path = _yaml(tmp_path, {"manifest": "m.jsonl", "dim": 1, "train": {"lr": -1}})
    with pytest.raises(UsageError) as e:
        load_config(RetrievalConfig, path, {})
    msg = str(e.value)
    assert msg.startswith(f"invalid configuration in {path}: dim: Input should be greater "
                          f"than or equal to 2") and "train.lr: Input should be greater" in msg


def test_registry_names_are_checked_with_did_you_mean(tmp_path):
    with pytest.raises(UsageError, match=r"^unknown loss 'siglp'; did you mean 'siglip'\? "
                                         r"\(valid: infonce, siglip, "):
        RetrievalConfig(manifest="m.jsonl", loss="siglp")
    path = _yaml(tmp_path, {"manifest": "m.jsonl", "loss": "triplet-semi"})
    with pytest.raises(UsageError, match=f"^invalid configuration in {path}: unknown loss "
                                         f"'triplet-semi'; did you mean 'triplet-semihard'"):
        load_config(RetrievalConfig, path, {})
    with pytest.raises(UsageError, match="unknown head 'mpl'; did you mean 'mlp'"):
        RetrievalConfig(manifest="m.jsonl", head="mpl")
    with pytest.raises(UsageError, match="unknown caption decoder 'transformers'; did you mean "
                                         "'transformer'"):
        CaptionConfig(manifest="m.jsonl", decoder="transformers")
    with pytest.raises(UsageError, match="unknown generator 'vae'; did you mean 'cvae'"):
        GenerateConfig(manifest="m.jsonl", model="vae")
    with pytest.raises(UsageError, match="encoder 'minilm' is a text encoder, not image"):
        ClassifierConfig(manifest="m.jsonl", encoders={"image": "minilm"})
    assert RetrievalConfig(manifest="m", encoders={"text": "hf:org/m"}).encoders == \
        {"text": "hf:org/m"}


def test_fusion_names_and_unimodal_baselines():
    assert ClassifierConfig(manifest="m", fusion="unimodal:audio").fusion == "unimodal:audio"
    with pytest.raises(UsageError, match=r"^unknown fusion 'erly'; did you mean 'early'\? "
                                         r"\(valid: early, .*, unimodal:audio, unimodal:image, "
                                         r"unimodal:text, unimodal:video\)$"):
        ClassifierConfig(manifest="m", fusion="erly")
    with pytest.raises(UsageError, match=r"cross-attention, film, relation, unimodal:audio, unimodal:image$"):
        ClassifierConfig(manifest="m", modalities=["image", "audio"], fusion="concat")
    with pytest.raises(UsageError, match="modality 'text' is not among the modalities used "
                                         r"\(audio, image\)"):
        ClassifierConfig(manifest="m", modalities=["image", "audio"], fusion="unimodal:text")


def test_cli_unknown_yaml_key_exits_2_with_one_line(tmp_path, capsys):
    path = _yaml(tmp_path, {"manifest": "m.jsonl", "batchsize": 64})
    rc = main(["fit", "retrieval", "--config", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == f"error: unknown key 'batchsize' in {path}; did you mean 'batch_size'?\n"
    assert not (tmp_path / "run").exists()  # nothing started
    path = _yaml(tmp_path, {"manifest": "m.jsonl", "fusion": "gatd"}, "c.yaml")
    rc = main(["fit", "classify", "--config", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: invalid configuration in {path}: unknown fusion "
                                      f"'gatd'; did you mean 'gated'?") and err.count("\n") == 1
