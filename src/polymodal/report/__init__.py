"""HTML reports, read from run and compare folders. A top layer: tasks never import it; the
CLI asks for the report after a task has written its folder."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"write_report": "polymodal.report.retrieval", "auto_report": "polymodal.report.retrieval",
            "retrieval_report": "polymodal.report.retrieval",
            "classification_report": "polymodal.report.classify",
            "compare_report": "polymodal.report.classify"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
