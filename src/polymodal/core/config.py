"""Task configs: pydantic models read from YAML, overridden by command-line values.

One schema serves YAML, the CLI and Python: ``load_config(RetrievalConfig, "exp.yaml",
{"loss": "siglip"}, {"epochs": 5})`` is what ``polymodal fit retrieval --config exp.yaml
--loss siglip --epochs 5`` builds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from polymodal.core.errors import UsageError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file; a clear error when it cannot be read or is not a mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UsageError(f"{path}: cannot read config ({e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a config must be a mapping of option: value")
    return data


def validate_config(cls: type[M], data: Mapping[str, Any], source: str = "configuration") -> M:
    """``cls.model_validate(data)`` with pydantic's errors turned into one UsageError."""
    try:
        return cls.model_validate(dict(data))
    except ValidationError as e:
        why = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'config'}: {err['msg']}"
                        for err in e.errors())
        raise UsageError(f"invalid {source}: {why}") from None


def load_config(cls: type[M], path: str | Path | None, over: Mapping[str, Any],
                train: Mapping[str, Any] | None = None, progress: bool = True) -> M:
    """A ``cls`` config from an optional YAML file, overridden by ``over`` (top-level keys) and
    ``train`` (keys of its ``train`` section); ``manifest`` must come from one of them."""
    data = read_yaml(path) if path else {}
    data.update({k: v for k, v in over.items() if v is not None})
    if "train" in cls.model_fields:
        tr = data.get("train")
        if tr is None:
            tr = cls.model_fields["train"].default.model_dump()
        tr = dict(tr)
        tr.update({k: v for k, v in (train or {}).items() if v is not None})
        tr["progress"] = progress and tr.get("progress", True)
        data["train"] = tr
    if "manifest" in cls.model_fields and not data.get("manifest"):
        raise UsageError("give --manifest (or a --config with 'manifest:')")
    return validate_config(cls, data, f"configuration{f' in {path}' if path else ''}")
