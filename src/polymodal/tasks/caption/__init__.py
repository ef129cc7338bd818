"""Image captioning: config.py (torch-free) · fit.py · predict.py. Imported lazily."""
from __future__ import annotations

from polymodal.core.lazy import lazy_exports

_EXPORTS = {
    'CaptionConfig': 'polymodal.tasks.caption.config',
    'fit_caption': 'polymodal.tasks.caption.fit',
    'load_captioner': 'polymodal.tasks.caption.fit',
    'caption_images': 'polymodal.tasks.caption.fit',
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
