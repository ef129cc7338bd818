"""Task configs: strict pydantic models read from YAML, overridden by command-line values.

One schema serves YAML, the CLI and Python: ``load_config(RetrievalConfig, "exp.yaml",
{"loss": "siglip"}, {"epochs": 5})`` is what ``polymodal fit retrieval --config exp.yaml
--loss siglip --epochs 5`` builds (the CLI's options are generated from the same models,
`polymodal.cli.options`). Every config derives from `StrictConfig`: an unknown key is an
error with a did-you-mean, never silently ignored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, model_validator

from polymodal.core.errors import UsageError
from polymodal.core.registry import Registry, closest

M = TypeVar("M", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base of every config model: unknown keys are rejected (``extra="forbid"``). A nested
    section given as a mapping (``train: {seed: 1}``) updates the field's default section,
    so a task's own training defaults (e.g. captioning's 20 epochs) survive a partial one."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _merge_sections(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        for name, field in cls.model_fields.items():
            default, given = field.default, data.get(name)
            if isinstance(default, BaseModel) and isinstance(given, Mapping):
                data[name] = {**default.model_dump(exclude_unset=True), **given}
        return data


def in_registry(registry: Registry) -> AfterValidator:
    """Validator for ``Annotated[str, in_registry(FUSIONS)]``: the value must be a name of
    ``registry``. It raises the registry's one-line `UsageError` (did-you-mean) itself, so a
    bad name is a `UsageError` in Python too, not a pydantic `ValidationError`."""
    def check(value: str) -> str:
        registry.get(value)
        return value
    return AfterValidator(check)


def nested_model(cls: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The model class of field ``name`` when it is itself a pydantic model (``train``)."""
    ann = cls.model_fields[name].annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; a clear error when it cannot be read or is not a mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"{path}: cannot read config ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a config must be a mapping of option: value")
    return data


def _unknown_key(cls: type[BaseModel], loc: tuple, where: str) -> str:
    """``unknown key 'batchsize' in exp.yaml; did you mean 'batch_size'?`` (a key of a nested
    model is also suggested for a top-level one: ``epochs`` -> ``train.epochs``)."""
    model, prefix = cls, ""
    for part in loc[:-1]:
        sub = nested_model(model, part) if part in model.model_fields else None
        if sub is None:
            break
        model, prefix = sub, f"{prefix}{part}."
    key = str(loc[-1])
    keys = {f"{prefix}{n}": n for n in model.model_fields}  # shown -> matched
    for n in model.model_fields:
        sub = nested_model(model, n)
        keys.update({f"{prefix}{n}.{k}": k for k in (sub.model_fields if sub else ())})
    near = closest(key, dict.fromkeys(keys.values()), n=2)
    shown = [s for m in near for s, k in keys.items() if k == m][:2]
    where = f"'{'.'.join(str(x) for x in loc)}'{where}"
    if shown:
        return f"unknown key {where}; did you mean {' or '.join(repr(s) for s in shown)}?"
    return (f"unknown key {where}; valid keys: "
            f"{', '.join(f'{prefix}{n}' for n in model.model_fields)}")


def validate_config(cls: type[M], data: Mapping[str, Any], source: str | None = None) -> M:
    """``cls.model_validate(data)`` with its errors turned into one one-line `UsageError`;
    ``source`` (a file, "run config RUN/config.yaml") is named in the message."""
    where = f" in {source}" if source else ""
    try:
        return cls.model_validate(dict(data))
    except ValidationError as e:
        why = []
        for err in e.errors():
            if err["type"] == "extra_forbidden":
                why.append(_unknown_key(cls, tuple(err["loc"]), where))
                continue
            msg = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
            why.append(f"{'.'.join(str(x) for x in err['loc']) or 'config'}: {msg}")
        unknown = [w for w in why if w.startswith("unknown key")]
        if unknown:  # the key is the mistake; the rest are usually consequences
            raise UsageError("; ".join(unknown)) from None
        raise UsageError(f"invalid configuration{where}: {'; '.join(why)}") from None
    except UsageError as e:  # a registry name (loss, fusion, encoder) a validator rejected
        raise UsageError(f"invalid configuration{where}: {e}") from None


def load_config(cls: type[M], path: str | Path | None, over: Mapping[str, Any],
                train: Mapping[str, Any] | None = None, progress: bool = True) -> M:
    """A ``cls`` config from an optional YAML file, overridden by ``over`` (top-level keys) and
    ``train`` (keys of its ``train`` section); ``manifest`` must come from one of them.
    Values ``None`` in ``over`` / ``train`` mean "not given"."""
    data = read_yaml(path) if path else {}
    data.update({k: v for k, v in over.items() if v is not None})
    if "train" in cls.model_fields:
        tr = data.get("train")
        if tr is None:
            tr = {}  # the task's own defaults (StrictConfig merges the given keys into them)
        if not isinstance(tr, Mapping):
            raise UsageError(f"{path or 'configuration'}: 'train' must be a mapping of "
                             f"option: value, got {tr!r}")
        tr = dict(tr)
        tr.update({k: v for k, v in (train or {}).items() if v is not None})
        tr["progress"] = progress and tr.get("progress", True)
        data["train"] = tr
    if "manifest" in cls.model_fields and not data.get("manifest"):
        raise UsageError("give --manifest (or a --config with 'manifest:')")
    return validate_config(cls, data, str(path) if path else None)
