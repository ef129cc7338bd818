"""``POST /caption`` for a caption run (``fit caption``): an uploaded image goes to the run's
`Captioner` (``polymodal.load``), which encodes it with the run's image encoder and decodes a
sentence (beam search, or greedy with ``beam=1``)."""
# No ``from __future__ import annotations``: FastAPI must see the endpoint's parameter types
# (imported inside caption_routes) as real classes, not as strings it cannot resolve.
import time
from typing import Any

from polymodal.core.errors import UsageError
from polymodal.serve.common import Guard

MAX_BEAM = 10


def caption_routes(app: Any, guard: Guard, model: Any, preload: bool) -> dict:
    """Add ``POST /caption`` for ``model`` (a `Captioner`) to ``app``; returns the run's
    /health facts."""
    from fastapi import File, Form, UploadFile
    from starlette.concurrency import run_in_threadpool

    if preload:
        model.warm_up()
    default_beam = model.beam

    def work(path: str, beam: int) -> str:
        if not 1 <= beam <= MAX_BEAM:
            raise UsageError(f"beam={beam} must be between 1 and {MAX_BEAM}")
        return model.caption(path, beam=beam)

    @app.post("/caption")
    async def caption(file: UploadFile = File(..., description="an image file"),
                      beam: int = Form(default_beam, description="beam width (1 = greedy)")
                      ) -> dict:
        """Describe an uploaded image in words (multipart: ``file``, optional ``beam``).
        Returns ``caption``, ``beam`` and ``latency_ms``."""
        t0 = time.perf_counter()
        path, _ = await guard.save(file, expect="image")
        try:
            text = await run_in_threadpool(guard.run, lambda: work(str(path), beam),
                                           {str(path): file.filename or "upload"})
        finally:
            path.unlink(missing_ok=True)
        return {"caption": text, "beam": beam,
                "latency_ms": round((time.perf_counter() - t0) * 1000, 2)}

    c = model.config
    return {"description": f"Image captioning ({c.get('decoder')} decoder) of run "
                           f"{model.root.name}",
            "modalities": ["image"], "decoder": c.get("decoder"), "beam": default_beam,
            "encoder": model.encoder_name}
