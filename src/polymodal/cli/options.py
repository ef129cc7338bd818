"""Command-line options generated from the config models (one schema for YAML, CLI, Python).

``add_config_options(parser, RetrievalConfig)`` adds one option per field, nested models
(``train``) included: ``--batch-size``, ``--epochs``, ``--weight-decay``… The type comes from
the annotation, the help from the field's description and default:

=====================  ====================================================================
annotation             option
=====================  ====================================================================
int / float / str      ``--dim 64``
Literal[...]           ``--head {linear,mlp}`` (choices)
bool                   ``--tensorboard`` / ``--no-tensorboard``
dict[str, str]         ``--encoders text=minilm`` (repeatable KEY=VALUE)
dict[str, Any]         ``--fusion-options attn_dim=32`` (values: int, float, true/false, str)
list[str]              ``--modalities image,audio`` (comma list)
tuple[float, float]    ``--betas 0.5 0.999``
=====================  ====================================================================

Every default is ``None`` ("not given") so that a ``--config`` YAML is only overridden by
the options actually typed. ``config_overrides(args, cls)`` turns the parsed options back
into the ``(top-level, train)`` dicts of `polymodal.core.config.load_config`.
"""
from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from polymodal.core.config import load_config, nested_model
from polymodal.core.errors import UsageError

__all__ = ["ALIASES", "METAVARS", "add_config_options", "config_from_args", "config_overrides",
           "config_fields", "flag_of"]

# flag names that existed before the options were generated: kept as aliases
ALIASES: Mapping[str, tuple[str, ...]] = {
    "encoders": ("--encoder",),
    "columns": ("--column",),
    "fusion_options": ("--fusion-option",),
    "cache_dir": ("--cache",),
}
METAVARS: Mapping[str, str] = {"encoders": "MODALITY=NAME", "columns": "ROLE=COLUMN"}
_DEST = "config:"  # argparse dest prefix: config values never collide with other options

M = typing.TypeVar("M", bound=BaseModel)


def config_fields(cls: type[BaseModel], skip: Sequence[str] = ()
                  ) -> Iterator[tuple[tuple[str, ...], FieldInfo, Any]]:
    """``(path, field, default)`` of every leaf field of ``cls``; nested models are walked
    (``("train", "epochs")``) with the parent's default instance giving the defaults."""
    for name, info in cls.model_fields.items():
        if name in skip:
            continue
        sub = nested_model(cls, name)
        if sub is None:
            yield (name,), info, info.get_default(call_default_factory=True)
            continue
        parent = info.get_default(call_default_factory=True)
        for sname, sinfo in sub.model_fields.items():
            if f"{name}.{sname}" not in skip:
                yield (name, sname), sinfo, getattr(parent, sname, None)


def flag_of(path: Sequence[str]) -> str:
    """The option of a field: its last name with dashes (``train.weight_decay`` ->
    ``--weight-decay``)."""
    return "--" + path[-1].replace("_", "-")


def _strip_optional(ann: Any) -> Any:
    if typing.get_origin(ann) in (Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def parse_pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a `UsageError` for a value without ``=``."""
    out: dict[str, str] = {}
    for v in values:
        if "=" not in v:
            raise UsageError(f"{flag} expects KEY=VALUE, got '{v}'")
        k, val = v.split("=", 1)
        out[k.strip()] = val.strip()
    return out


def coerce_value(v: str) -> Any:
    """A command-line string as int, float, bool (true / false) or itself."""
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def _comma_list(v: str) -> list[str]:
    return [x.strip() for x in v.split(",") if x.strip()]


def _as_is(value: Any, flag: str) -> Any:
    return value


def _parse_options(values: Sequence[str], flag: str) -> dict[str, Any]:
    return {k: coerce_value(v) for k, v in parse_pairs(values, flag).items()}


def _spec(path: tuple[str, ...], info: FieldInfo
          ) -> tuple[dict[str, Any], Callable[[Any, str], Any]]:
    """argparse keyword arguments for a field, and how to turn the parsed value into the
    config value."""
    ann = _strip_optional(info.annotation)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann is bool:
        return {"action": argparse.BooleanOptionalAction}, _as_is
    if ann in (int, float, str):
        return {"type": ann, "metavar": path[-1].upper()}, _as_is
    if origin is Literal:
        kinds = {type(a) for a in args}
        return {"choices": list(args), "type": kinds.pop() if len(kinds) == 1 else str}, _as_is
    if origin is dict and args and args[0] is str and args[1] in (str, Any):
        return ({"action": "append", "metavar": "KEY=VALUE"},
                parse_pairs if args[1] is str else _parse_options)
    if origin is list and args == (str,):
        return {"type": _comma_list, "metavar": "A,B"}, _as_is
    if origin is tuple and args and Ellipsis not in args and len(set(args)) == 1 \
            and args[0] in (int, float, str):
        name = path[-1].upper()
        return {"type": args[0], "nargs": len(args),
                "metavar": tuple(f"{name}{i + 1}" for i in range(len(args)))}, _as_is
    raise TypeError(f"config field {'.'.join(path)}: no command-line form for {ann!r}")


def _help(info: FieldInfo, default: Any, required: bool) -> str:
    text = info.description or ""
    if required:
        text += " (required here or in --config)"
    elif default not in (None, {}, [], ()) and not isinstance(default, bool):
        text += f" (default: {default})"
    elif isinstance(default, bool):
        text += f" (default: {'on' if default else 'off'})"
    return text.strip().replace("%", "%%")


def add_config_options(parser: argparse.ArgumentParser, cls: type[BaseModel],
                       skip: Sequence[str] = ()) -> None:
    """Add an option for every field of ``cls`` (``skip``: dotted field names to leave out,
    e.g. ``fusion`` for ``compare``, which chooses methods with ``--fusions``)."""
    groups: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for path, info, default in config_fields(cls, skip):
        section = path[0] if len(path) > 1 else ""
        if section not in groups:
            title = (f"{cls.__name__} options (the keys of a --config YAML; the options "
                     f"given override it)" if not section else
                     f"{section} options (the '{section}:' section of a --config YAML)")
            groups[section] = parser.add_argument_group(title)
        kwargs, _ = _spec(path, info)
        if path[-1] in METAVARS:
            kwargs["metavar"] = METAVARS[path[-1]]
        flags = [flag_of(path), *ALIASES.get(path[-1], ())]
        for f in flags:
            if f in seen:
                raise ValueError(f"{cls.__name__}: option {f} of {'.'.join(path)} clashes "
                                 f"with {seen[f]}")
            seen[f] = ".".join(path)
        groups[section].add_argument(*flags, dest=_DEST + ".".join(path), default=None,
                                     help=_help(info, default, info.is_required()), **kwargs)


def config_overrides(ns: argparse.Namespace, cls: type[BaseModel]
                     ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The options given on the command line as ``(top-level values, {section: values})``,
    e.g. ``({"loss": "siglip"}, {"train": {"epochs": 5}})``."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, info, _ in config_fields(cls):
        raw = getattr(ns, _DEST + ".".join(path), None)
        if raw is None:
            continue
        value = _spec(path, info)[1](raw, flag_of(path))
        (nested.setdefault(path[0], {}) if len(path) > 1 else top)[path[-1]] = value
    return top, nested


def config_from_args(cls: type[M], ns: argparse.Namespace) -> M:
    """``cls`` from ``--config`` (if given) overridden by the generated options; ``-q``
    turns progress bars off."""
    top, nested = config_overrides(ns, cls)
    unknown = set(nested) - {"train"}
    if unknown:  # load_config merges exactly one nested section
        raise TypeError(f"{cls.__name__}: nested sections {sorted(unknown)} are not supported")
    return load_config(cls, getattr(ns, "config", None), top, nested.get("train"),
                       progress=not getattr(ns, "quiet", False))
