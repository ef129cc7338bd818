"""Checks of a search request that need no model (torch-free): shared by the torch `Retriever`
and the exported, onnxruntime-only `ExportedRetriever`, so both refuse the same queries with
the same words."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from polymodal.core.errors import UsageError


def check_query(query: Any, modality: str | None, query_side: str, target_side: str) -> str:
    """The modality of ``query`` (default ``query_side``) after the checks that need no
    encoding: a modality the run does not align, an empty text, a file that does not exist."""
    modality = modality or query_side
    if modality not in (query_side, target_side):
        raise UsageError(f"this run aligns {query_side} and {target_side}; cannot search with "
                         f"{modality}")
    if not isinstance(query, (str, os.PathLike)) or not str(query).strip():
        raise UsageError(f"empty {modality} query")
    if modality != "text" and not Path(query).is_file():
        raise UsageError(f"query {modality} file not found: {query}")
    return modality


def check_k(k: int, size: int) -> None:
    """``k`` must lie in 1 … the index size."""
    if k <= 0 or k > size:
        raise UsageError(f"k={k} must be between 1 and the index size {size}")
