"""Use a fitted generation run: `ImageGenerator` (what ``polymodal.load(RUN)`` returns for a
generation run), built on `load_generator` / `generate_images`. The condition's encoder is
rebuilt from the run's stored name and checked against the stored id before any prompt is
encoded."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from polymodal.core.runfolder import RunFolder
from polymodal.features.encoders.base import Encoder, rebuild_encoder, warm_up
from polymodal.tasks.generate.fit import (LoadedGenerator, generate_grid, generate_images,
                                          load_generator)


class ImageGenerator:
    """``generate(text=…)`` or ``generate(audio=…)`` -> ``n`` images ``[n, C, S, S]`` in
    [0, 1]; ``grid(out, …)`` saves them as one PNG."""

    def __init__(self, loaded: LoadedGenerator):
        self.loaded = loaded
        self._checked = False

    @classmethod
    def load(cls, run: str | Path) -> "ImageGenerator":
        return cls(load_generator(run))

    @property
    def root(self) -> Path:
        return Path(self.loaded.run)

    @property
    def condition(self) -> str:
        """The modality prompts are given in (text or audio)."""
        return str(self.loaded.doc["condition"])

    def encoder(self) -> Encoder:
        """The run's condition encoder, checked against the stored id (built on first use)."""
        if not self._checked:
            doc, m = self.loaded.doc, self.condition
            spec = RunFolder(self.root, doc).encoders.get(m) or {}
            self.loaded._encoder = rebuild_encoder(
                spec.get("name") or str(doc.get("encoder") or ""), m,
                spec.get("id") or doc.get("encoder_id"), where=str(self.root))
            self._checked = True
        return self.loaded.encoder()

    def warm_up(self) -> None:
        warm_up(self.encoder())

    def generate(self, text: str | None = None, audio: str | Path | None = None, n: int = 16,
                 seed: int = 0) -> np.ndarray:
        """``n`` images for one prompt (a text, or an audio file), reproducible by ``seed``."""
        self.encoder()
        return generate_images(self.loaded, text, None if audio is None else str(audio), n, seed)

    def grid(self, out: str | Path, text: str | None = None, audio: str | Path | None = None,
             n: int = 16, seed: int = 0) -> Path:
        """`generate` and save the images as one PNG grid at ``out``."""
        self.encoder()
        return generate_grid(self.loaded, out, text, None if audio is None else str(audio), n,
                             seed)
