"""Images from text or audio (cVAE, GAN): config.py (torch-free) · data.py · fit.py · predict.py.
Imported lazily."""
from __future__ import annotations

from polymodal.core.lazy import lazy_exports

_EXPORTS = {
    'GenerateConfig': 'polymodal.tasks.generate.config',
    'fit_generate': 'polymodal.tasks.generate.fit',
    'load_generator': 'polymodal.tasks.generate.predict',
    'generate_images': 'polymodal.tasks.generate.predict',
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
