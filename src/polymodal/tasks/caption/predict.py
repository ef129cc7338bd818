"""Use a fitted caption run: `Captioner` (what ``polymodal.load(RUN)`` returns for a caption
run), built on `load_captioner` / `caption_images`. The image encoder is rebuilt from the run's
stored name and checked against the stored id before any image is captioned."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from polymodal.core.runfolder import RunFolder
from polymodal.features.encoders.base import Encoder, rebuild_encoder, warm_up
from polymodal.tasks.caption.fit import LoadedCaptioner, caption_images, load_captioner


class Captioner:
    """``caption(images, beam=None)``: one path -> its caption, a list -> one per image."""

    def __init__(self, loaded: LoadedCaptioner):
        self.loaded = loaded
        self._checked = False

    @classmethod
    def load(cls, run: str | Path) -> "Captioner":
        return cls(load_captioner(run))

    @property
    def root(self) -> Path:
        return Path(self.loaded.run)

    @property
    def config(self) -> dict:
        return dict(self.loaded.doc.get("config") or {})

    @property
    def beam(self) -> int:
        """The run's default beam width."""
        return int(self.config.get("beam", 1))

    @property
    def encoder_name(self) -> str:
        return self._stored()[0]

    def _stored(self) -> tuple[str, str | None]:
        doc = self.loaded.doc
        spec = RunFolder(self.root, doc).encoders.get("image") or {}
        return (spec.get("name") or str(doc.get("encoder") or ""),
                spec.get("id") or doc.get("encoder_id"))

    def encoder(self) -> Encoder:
        """The run's image encoder, checked against the stored id (built on first use)."""
        if not self._checked:
            name, want = self._stored()
            self.loaded._encoder = rebuild_encoder(name, "image", want, where=str(self.root))
            self._checked = True
        return self.loaded.encoder()

    def warm_up(self) -> None:
        warm_up(self.encoder())

    def caption(self, images: Any, beam: int | None = None) -> str | list[str]:
        """Captions of image files (beam search with ``beam``, default the run's; 1 = greedy)."""
        single = isinstance(images, (str, os.PathLike))
        batch = [images] if single else [str(p) for p in images]
        if not batch:
            return []
        self.encoder()
        out = caption_images(self.loaded, batch, beam=beam)
        return out[0] if single else out
