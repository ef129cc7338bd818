"""Lazy package exports (PEP 562): a package names what it offers without importing it, so
``import polymodal`` (or a torch-free config) loads no torch until a name is used."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from polymodal.core.errors import PolymodalError


def lazy_exports(package: str, exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for a package whose ``exports`` map a name to the module that
    defines it; use as ``__getattr__, __all__ = lazy_exports(__name__, {...})``."""
    table = dict(exports)

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(table)


def need(*modules: str, message: str, error: type[PolymodalError] = PolymodalError) -> Any:
    """Import ``modules`` (an optional dependency) and return the first, or raise ``error``
    with the one-line ``message`` (which names the extra to install) when one is missing."""
    try:
        mods = [importlib.import_module(m) for m in modules]
    except ImportError:
        raise error(message) from None
    return mods[0]
