"""HTML reports, read from run and compare folders. A top layer: tasks never import it; the
CLI asks for the report after a task has written its folder."""
from __future__ import annotations

from polymodal.core.lazy import lazy_exports

_EXPORTS = {"write_report": "polymodal.report.retrieval", "auto_report": "polymodal.report.retrieval",
            "retrieval_report": "polymodal.report.retrieval",
            "classification_report": "polymodal.report.classify",
            "compare_report": "polymodal.report.classify"}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
