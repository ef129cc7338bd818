"""The fit / compare options are generated from the config models: every field has one,
and values typed on the command line reach the config (and only those)."""
from __future__ import annotations

import argparse
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from polymodal.cli.main import build_parser, main
from polymodal.cli.options import (ALIASES, add_config_options, config_fields, config_from_args,
                                   config_overrides, flag_of)
from polymodal.core.config import StrictConfig
from polymodal.tasks.caption.config import CaptionConfig
from polymodal.tasks.classify.config import ClassifierConfig
from polymodal.tasks.generate.config import GenerateConfig
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
COMMANDS = {("fit", "retrieval"): RetrievalConfig, ("fit", "classify"): ClassifierConfig,
            ("compare",): ClassifierConfig, ("fit", "caption"): CaptionConfig,
            ("fit", "generate"): GenerateConfig}
# fields a command sets with a non-generated option instead
COVERED = {("compare",): {("fusion",): "--fusions"}}


def _subparser(*names: str) -> argparse.ArgumentParser:
    p = build_parser()
    for n in names:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[n]
    return p


def _flags(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {f: a for a in p._actions for f in a.option_strings}


def _sample(ann: Any, action: argparse.Action) -> tuple[list[str], Any]:
    """Command-line words for a field and the value they must give."""
    ann = typing.get_args(ann)[0] if type(None) in typing.get_args(ann) else ann
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann is bool:
        return [], True
    if action.choices:
        return [str(list(action.choices)[-1])], list(action.choices)[-1]
    if ann is int:
        return ["7"], 7
    if ann is float:
        return ["0.25"], 0.25
    if ann is str:
        return ["some-value"], "some-value"
    if origin is dict:
        return (["k=3"], {"k": 3}) if args[1] is Any else (["k=v"], {"k": "v"})
    if origin is list:
        return ["a, b"], ["a", "b"]
    if origin is tuple:
        return ["0.5", "0.9"], [0.5, 0.9]
    raise AssertionError(f"no sample for {ann}")


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_every_config_field_has_an_option_that_reaches_the_config(command):
    cls = COMMANDS[command]
    p = _subparser(*command)
    flags = _flags(p)
    covered = COVERED.get(command, {})
    paths = [path for path, _, _ in config_fields(cls)]
    assert ("train", "weight_decay") in paths and ("train", "betas") in paths  # nested walked
    for path, info, _ in config_fields(cls):
        if path in covered:
            assert covered[path] in flags and flag_of(path) not in flags, path
            continue
        flag = flag_of(path)
        assert flag in flags, f"{' '.join(command)}: field {'.'.join(path)} has no {flag}"
        words, want = _sample(info.annotation, flags[flag])
        ns = p.parse_args(["--out", "o", flag, *words])
        top, nested = config_overrides(ns, cls)
        got = nested["train"] if path[0] == "train" else top
        assert got == {path[-1]: want}, (path, got)  # this option and nothing else
    untouched = p.parse_args(["--out", "o"])
    assert config_overrides(untouched, cls) == ({}, {})  # defaults None: YAML not overridden


def test_round_trips_through_the_config(tmp_path):
    p = _subparser("fit", "classify")
    ns = p.parse_args(["--manifest", "m.jsonl", "--weight-decay", "0.01", "--encoder",
                       "audio=logmel", "--column", "audio=wav", "--fusion", "attention",
                       "--fusion-option", "attn_dim=32", "--fusion-option", "norm=false",
                       "--modalities", "image,audio", "--cache", "c/", "--betas", "0.5",
                       "0.99", "--tensorboard", "--keep", "last", "-q", "--out", "o"])
    cfg = config_from_args(ClassifierConfig, ns)
    assert cfg.train.weight_decay == 0.01 and cfg.train.betas == (0.5, 0.99)
    assert cfg.train.tensorboard is True and cfg.train.keep == "last"
    assert cfg.train.progress is False  # -q
    assert cfg.encoders == {"audio": "logmel"} and cfg.columns == {"audio": "wav"}
    assert cfg.fusion_options == {"attn_dim": 32, "norm": False}
    assert cfg.modalities == ["image", "audio"] and cfg.cache_dir == "c/"
    assert cfg.train.epochs == TrainConfig().epochs  # not given: the default


def test_yaml_values_are_only_overridden_by_options_given(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"manifest": "m.jsonl", "batch_size": 64, "loss": "siglip",
                                    "train": {"epochs": 3, "lr": 0.01}}))
    p = _subparser("fit", "retrieval")
    cfg = config_from_args(RetrievalConfig, p.parse_args(["--config", str(path), "--lr", "0.5",
                                                          "--dim", "32", "--out", "o"]))
    assert (cfg.batch_size, cfg.loss, cfg.dim) == (64, "siglip", 32)
    assert (cfg.train.epochs, cfg.train.lr) == (3, 0.5)
    cap = config_from_args(CaptionConfig, _subparser("fit", "caption").parse_args(
        ["--manifest", "m.jsonl", "--epochs", "2", "--out", "o"]))
    assert (cap.train.epochs, cap.train.patience) == (2, 4)  # the task's train defaults kept


def test_old_flag_names_are_aliases():
    for command, cls in COMMANDS.items():
        flags = _flags(_subparser(*command))
        for field, aliases in ALIASES.items():
            if field in cls.model_fields:
                assert all(flags[a] is flags[flag_of((field,))] for a in aliases), (command, field)


def test_bad_values_exit_2_with_one_line(tmp_path, capsys):
    rc = main(["fit", "retrieval", "--manifest", "m.jsonl", "--encoder", "text", "--out",
               str(tmp_path / "r")])
    assert rc == 2 and capsys.readouterr().err == \
        "error: --encoders expects KEY=VALUE, got 'text'\n"
    rc = main(["fit", "retrieval", "--manifest", "m.jsonl", "--loss", "infonse", "--out",
               str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown loss 'infonse'; did you mean 'infonce'?" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit) as e:  # a type argparse checks: its usage error, exit 2
        main(["fit", "generate", "--manifest", "m", "--size", "big", "--out", "o"])
    assert e.value.code == 2 and "--size: invalid int value: 'big'" in capsys.readouterr().err


def test_generator_refuses_what_it_cannot_express():
    class Odd(StrictConfig):
        tags: set[int] = set()

    with pytest.raises(TypeError, match="tags: no command-line form"):
        add_config_options(argparse.ArgumentParser(), Odd)

    class Clash(StrictConfig):
        seed: int = 0
        train: TrainConfig = TrainConfig()

    with pytest.raises(ValueError, match="option --seed of train.seed clashes with seed"):
        add_config_options(argparse.ArgumentParser(), Clash)


def test_help_comes_from_the_field_descriptions(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "retrieval", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--weight-decay WEIGHT_DECAY AdamW weight decay (default: 0.0001)" in out
    assert "--encoders MODALITY=NAME, --encoder MODALITY=NAME encoder per modality" in out
    assert "--tensorboard, --no-tensorboard also log to RUN/tensorboard/" in out


def test_list_prints_one_line_per_entry(capsys):
    from polymodal.nn.registry import FUSIONS
    from polymodal.objectives.registry import ALIGNMENTS

    assert main(["list", "losses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == ALIGNMENTS.names()
    assert "[kind=method  fit=aligner]" in lines[ALIGNMENTS.names().index("dcca")]
    assert main(["list", "encoders"]) == 0
    out = capsys.readouterr().out
    assert "[modality=audio  dim=256]" in out and "scheme=hf:<model name or local dir>" in out
    assert main(["list", "fusions", "--options"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * len(FUSIONS)
    assert lines[1].split() == ["options:", "hidden,", "dropout,", "norm"]  # early's
    assert main(["list", "datasets", "--options"]) == 0
    assert "options: limit, hard, snr_db, energy" in capsys.readouterr().out
    for kind, n in (("heads", 2), ("decoders", 3), ("generators", 2)):
        assert main(["list", kind]) == 0
        assert len(capsys.readouterr().out.splitlines()) == n


def test_building_the_parser_imports_no_torch():
    code = ("import sys\nfrom polymodal.cli.main import build_parser\nbuild_parser()\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
