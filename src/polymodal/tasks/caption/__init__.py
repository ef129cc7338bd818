"""Image captioning: config.py (torch-free) · fit.py · predict.py. Imported lazily."""
from __future__ import annotations

from polymodal.core.lazy import lazy_exports

_EXPORTS = {
    'CaptionConfig': 'polymodal.tasks.caption.config',
    'fit_caption': 'polymodal.tasks.caption.fit',
    'load_captioner': 'polymodal.tasks.caption.predict',
    'caption_images': 'polymodal.tasks.caption.predict',
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
