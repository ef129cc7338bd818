"""Images from text or audio (cVAE, GAN): config.py (torch-free) · data.py · fit.py · predict.py.
Imported lazily."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    'GenerateConfig': 'polymodal.tasks.generate.config',
    'fit_generate': 'polymodal.tasks.generate.fit',
    'load_generator': 'polymodal.tasks.generate.fit',
    'generate_images': 'polymodal.tasks.generate.fit',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
