"""``POST /classify`` for a classification run (``fit classify``): the uploaded files and text
go to the run's `Classifier` (``polymodal.load``), which encodes them with the run's own
encoders (checked against the ids its training features were made with) and fuses them;
modalities not given count as missing."""
# No ``from __future__ import annotations``: FastAPI must see the endpoint's parameter types
# (imported inside classify_routes) as real classes, not as strings it cannot resolve.

import time
from pathlib import Path
from typing import Any

from polymodal.serve.common import Guard, query_problem

TOP = 10  # probabilities returned per answer


def answer(model: Any, items: dict[str, Any], top: int = TOP) -> dict:
    """The JSON answer for one example (``items``: modality -> text or file path)."""
    p = model.predict(items)
    out = {"problem": model.problem, "modalities_given": sorted(items),
           "modalities_missing": [m for m in model.modalities if m not in items],
           "prediction": p.prediction}
    if p.probabilities is not None:
        best = sorted(p.probabilities.items(), key=lambda kv: -kv[1])[:top]
        out["probabilities"] = {str(k): round(v, 6) for k, v in best}
    if p.weights is not None:
        out["modality_weights"] = {m: round(w, 4) for m, w in p.weights.items()}
    return out


def classify_routes(app: Any, guard: Guard, model: Any, preload: bool) -> dict:
    """Add ``POST /classify`` for ``model`` (a `Classifier`) to ``app``; returns the run's
    /health facts."""
    from fastapi import File, Form, HTTPException, UploadFile
    from starlette.concurrency import run_in_threadpool

    if preload:
        model.warm_up()

    @app.post("/classify")
    async def classify(text: str | None = Form(None, description="text input (text runs)"),
                       image: UploadFile | None = File(None, description="an image file"),
                       audio: UploadFile | None = File(None, description="an audio file")
                       ) -> dict:
        """Predict from any subset of the run's modalities (multipart form: ``text``,
        ``image``, ``audio``); the ones not given are treated as missing. Returns
        ``prediction``, ``probabilities`` (classification: top 10 labels),
        ``modalities_given`` / ``modalities_missing``, ``modality_weights`` (attention-style
        fusions) and ``latency_ms``."""
        t0 = time.perf_counter()
        if text is not None and query_problem(text):
            raise HTTPException(422, query_problem(text))
        items: dict[str, Any] = {}
        saved: dict[str, str] = {}
        try:
            for m, up in (("image", image), ("audio", audio)):
                if up is None or not (up.filename or up.size):
                    continue
                path, _ = await guard.save(up, expect=m)
                saved[str(path)] = up.filename or "upload"
                items[m] = str(path)
            if text is not None and text.strip():
                items["text"] = text
            res = await run_in_threadpool(guard.run, lambda: answer(model, items), saved)
        finally:
            for p in saved:
                Path(p).unlink(missing_ok=True)
        res["latency_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return res

    labels = model.labels
    return {"description": f"{model.problem} with {model.method} over "
                           f"{', '.join(model.modalities)} (run {model.root.name})",
            "modalities": model.modalities, "problem": model.problem, "method": model.method,
            "labels": [str(x) for x in labels] if labels else None}
