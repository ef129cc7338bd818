"""Reading run folders: ``config.yaml`` (with its ``task``) and ``model.safetensors``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from polymodal.core.errors import PolymodalError


def read_run(run: str | Path, task: str, kind: str) -> tuple[Path, dict[str, Any], dict]:
    """``(folder, config doc, weights)`` of a run written for ``task``; a clear one-line
    error naming the folder when it is missing, unreadable or a different kind (``kind`` is
    the words used in messages, e.g. "classification run")."""
    from safetensors.torch import load_file

    run = Path(run)
    if not run.is_dir():
        raise PolymodalError(f"{run}: no such run folder")
    if not (run / "config.yaml").is_file():
        raise PolymodalError(f"{run}: not a {kind} (no config.yaml)")
    try:
        doc = yaml.safe_load((run / "config.yaml").read_text())
        if not isinstance(doc, dict) or doc.get("task") != task:
            raise PolymodalError(f"{run}: not a {kind} (task: "
                                 f"{doc.get('task') if isinstance(doc, dict) else None})")
        state = load_file(str(run / "model.safetensors"))
    except (OSError, yaml.YAMLError, ValueError, RuntimeError) as e:
        raise PolymodalError(f"{run}: not a usable {kind} ({e})") from None
    return run, doc, state
