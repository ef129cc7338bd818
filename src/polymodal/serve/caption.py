"""``POST /caption`` for a caption run (``fit caption``): an uploaded image is encoded with the
run's image encoder and decoded into a sentence (beam search, or greedy with ``beam=1``)."""
# No ``from __future__ import annotations``: FastAPI must see the endpoint's parameter types
# (imported inside caption_routes) as real classes, not as strings it cannot resolve.
import time
from pathlib import Path
from typing import Any

from polymodal.core.errors import UsageError
from polymodal.serve.common import Guard, warm_up

MAX_BEAM = 10


def caption_routes(app: Any, guard: Guard, run_dir: str | Path, preload: bool) -> dict:
    """Add ``POST /caption`` to ``app``; returns the run's /health facts."""
    from fastapi import File, Form, UploadFile
    from starlette.concurrency import run_in_threadpool

    from polymodal.tasks.caption.fit import caption_images, load_captioner

    run = load_captioner(run_dir)
    if preload:
        warm_up(run.encoder(), "image")
    default_beam = int(run.doc.get("config", {}).get("beam", 1))

    def work(path: str, beam: int) -> str:
        if not 1 <= beam <= MAX_BEAM:
            raise UsageError(f"beam={beam} must be between 1 and {MAX_BEAM}")
        return caption_images(run, [path], beam=beam)[0]

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

    c = run.doc.get("config", {})
    return {"description": f"Image captioning ({c.get('decoder')} decoder) of run "
                           f"{Path(run_dir).name}",
            "modalities": ["image"], "decoder": c.get("decoder"), "beam": default_beam,
            "encoder": run.doc.get("encoder")}
