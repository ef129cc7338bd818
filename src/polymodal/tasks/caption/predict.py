"""Use a fitted caption run: `Captioner` (what ``polymodal.load(RUN)`` returns for a caption
run), built on `load_captioner` / `caption_images`. The image encoder is rebuilt from the run's
stored name and checked against the stored id before any image is captioned."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from polymodal.core.errors import DecodeError, PolymodalError, UsageError
from polymodal.core.runfolder import RunFolder, read_run
from polymodal.nn.generative import beam_decode, build_captioner
from polymodal.tasks.caption.data import ids_to_text
from polymodal.features.encoders.base import Encoder, rebuild_encoder, warm_up


def decode(model: torch.nn.Module, feats: np.ndarray, vocab: Sequence[str], beam: int,
           max_len: int, length_penalty: float = 0.0, batch: int = 256) -> list[str]:
    out: list[str] = []
    for s in range(0, len(feats), batch):
        f = torch.from_numpy(np.ascontiguousarray(feats[s:s + batch], np.float32))
        out += [ids_to_text(ids, vocab) for ids in
                beam_decode(model, f, beam=beam, max_len=max_len, length_penalty=length_penalty)]
    return out


@dataclass
class LoadedCaptioner:
    run: Path
    doc: dict
    model: torch.nn.Module
    vocab: list[str]
    _encoder: Any = None
    index: Any = None  # rag runs: the training-neighbour index (`caption.rag.NeighbourIndex`)
    rerank: dict | None = None  # rag runs: consensus re-ranking settings (None: off)

    def encoder(self):
        if self._encoder is None:
            spec = self.doc["encoders"]["image"]  # rebuilt with the backend its id names
            self._encoder = rebuild_encoder(spec["name"], "image", spec.get("id"))
        return self._encoder


def load_captioner(run: str | Path) -> LoadedCaptioner:
    """Load a run folder written by `fit_caption`."""
    run, doc, state = read_run(run, "caption")
    try:
        vocab = json.loads((run / "vocab.json").read_text())
        model = build_captioner(doc.get("model") or doc["spec"])
        model.load_state_dict(state)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise PolymodalError(f"{run}: not a usable caption run ({e})") from None
    loaded = LoadedCaptioner(run, doc, model.eval(), vocab)
    if model.spec["kind"] == "rag":
        from polymodal.tasks.caption.rag import NeighbourIndex, stored_rerank

        loaded.index, loaded.rerank = NeighbourIndex.load(run), stored_rerank(run)
    return loaded


def caption_images(run: LoadedCaptioner, images: Sequence[str | Path],
                   beam: int | None = None) -> list[str]:
    """Captions for image files (encoded with the run's image encoder)."""
    if beam is not None and beam < 1:
        raise UsageError(f"--beam must be at least 1, got {beam}")
    enc = run.encoder()
    try:
        x = enc.encode(list(images)).float().numpy()
    except DecodeError as e:
        raise PolymodalError(f"{e.path}: {e.reason}") from None
    c = run.doc["config"]
    if run.index is not None:
        from polymodal.tasks.caption.rag import rag_caption

        return rag_caption(run.model, x, run.index, run.vocab, c, beam or c["beam"],
                           run.rerank)[0]
    return decode(run.model, x, run.vocab, beam or c["beam"], c["max_len"],
                  c.get("length_penalty", 0.0))



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
