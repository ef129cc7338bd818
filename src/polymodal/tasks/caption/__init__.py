"""Image captioning: config.py (torch-free) · fit.py · predict.py. Imported lazily."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    'CaptionConfig': 'polymodal.tasks.caption.config',
    'fit_caption': 'polymodal.tasks.caption.fit',
    'load_captioner': 'polymodal.tasks.caption.fit',
    'caption_images': 'polymodal.tasks.caption.fit',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
