"""Use a fitted generation run: `ImageGenerator` (what ``polymodal.load(RUN)`` returns for a
generation run), built on `load_generator` / `generate_images`. The condition's encoder is
rebuilt from the run's stored name and checked against the stored id before any prompt is
encoded."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.core.errors import UsageError
from polymodal.core.runfolder import RunFolder, read_run
from polymodal.nn.generative import CVAE, CondGAN, build_generator
from polymodal.tasks.generate import data as gd
from polymodal.features.encoders.base import Encoder, rebuild_encoder, warm_up


@dataclass
class LoadedGenerator:
    run: Path
    doc: dict
    model: CVAE | CondGAN
    _encoder: Any = None

    def encoder(self):
        if self._encoder is None:
            cond = self.doc["condition"]
            spec = self.doc["encoders"][cond]  # rebuilt with the backend its id names
            self._encoder = rebuild_encoder(spec["name"], cond, spec.get("id"))
        return self._encoder


def load_generator(run: str | Path) -> LoadedGenerator:
    """Load a run folder written by `fit_generate`."""
    run, doc, state = read_run(run, "generate")
    model = build_generator(doc.get("model") or doc["spec"])
    model.load_state_dict(state)
    return LoadedGenerator(run, doc, model.eval())


def condition_vector(gen: LoadedGenerator, text: str | None = None,
                     audio: str | None = None) -> torch.Tensor:
    """Encode a text or audio prompt with the run's encoder -> ``[1, cond_dim]``."""
    if (text is None) == (audio is None):
        raise UsageError("give exactly one of --text or --audio")
    want = "text" if text is not None else "audio"
    if want != gen.doc["condition"]:
        raise UsageError(f"this run is conditioned on {gen.doc['condition']}; use "
                         f"--{gen.doc['condition']}")
    enc = gen.encoder()
    if text is not None:
        gd.check_prompt(enc, text)
    return enc.encode([text if text is not None else audio]).float()


def generate_images(gen: LoadedGenerator, text: str | None = None, audio: str | None = None,
                    n: int = 16, seed: int = 0) -> np.ndarray:
    """``n`` images ``[n, C, S, S]`` in [0, 1] for one prompt."""
    if n < 1:
        raise UsageError(f"--n must be at least 1, got {n}")
    c = condition_vector(gen, text, audio).repeat(n, 1)
    z = torch.randn(n, gen.model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return gen.model.sample(c, z).numpy()


def generate_grid(gen: LoadedGenerator, out: str | Path, text: str | None = None,
                  audio: str | None = None, n: int = 16, seed: int = 0) -> Path:
    """Generate ``n`` images for a prompt and save them as one PNG grid."""
    imgs = generate_images(gen, text, audio, n, seed)
    return gd.save_grid(imgs, Path(out), cols=int(np.ceil(np.sqrt(n))))



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
