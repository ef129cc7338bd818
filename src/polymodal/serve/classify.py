"""``POST /classify`` for a classification run (``fit classify``): the uploaded files and text
are encoded with the run's own encoders and fused; modalities not given count as missing.

The run's config.yaml stores each modality's encoder *id* (name + preprocessing settings); the
encoder is rebuilt from the name at the front of the id and must give the same id again, so a
served model never sees features made differently from its training features.
"""
# No ``from __future__ import annotations``: FastAPI must see the endpoint's parameter types
# (imported inside classify_routes) as real classes, not as strings it cannot resolve.

import time
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.core.errors import DecodeError, PolymodalError, UsageError
from polymodal.serve.common import Guard, warm_up


def encoder_name(encoder_id: str, fallback: str | None = None) -> str | None:
    """The registry name an encoder id was made by (``minilm|…`` -> ``minilm``; ``hf:org/m|…`` ->
    ``hf:org/m``), else ``fallback`` (the run config's encoder setting)."""
    from polymodal.features.encoders.registry import ENCODERS, HF_PREFIX

    head = encoder_id.split("|", 1)[0]
    if head in ENCODERS or (head.startswith(HF_PREFIX) and not head.startswith("hf:local/")):
        return head
    return fallback


class Classifier:
    """A loaded classification run plus its encoders (built on first use)."""

    def __init__(self, run_dir: str | Path):
        from polymodal.features.encoders import DEFAULT_ENCODERS
        from polymodal.tasks.classify.fit import load_classifier

        self.clf = load_classifier(run_dir)
        self.modalities = self.clf.modalities
        ids = self.clf.doc.get("encoders") or {}
        configured = self.clf.doc.get("config", {}).get("encoders") or {}
        self.ids = {m: str(ids.get(m, "")) for m in self.modalities}
        self.names = {m: encoder_name(self.ids[m], configured.get(m, DEFAULT_ENCODERS.get(m)))
                      for m in self.modalities}
        self._enc: dict[str, Any] = {}

    def encoder(self, modality: str) -> Any:
        """The run's encoder for ``modality`` (a `PolymodalError` if it cannot be rebuilt)."""
        from polymodal.features.encoders import build_encoder

        if modality not in self._enc:
            name = self.names[modality]
            if name is None:
                raise PolymodalError(f"this run's {modality} features were made by encoder "
                                     f"'{self.ids[modality]}', which cannot be rebuilt here")
            enc = build_encoder(name, modality=modality)
            if self.ids[modality] and enc.id != self.ids[modality]:
                raise PolymodalError(f"encoder '{name}' now gives id '{enc.id}', but the run was "
                                     f"trained on '{self.ids[modality]}'; cannot classify "
                                     f"{modality} inputs consistently")
            self._enc[modality] = enc
        return self._enc[modality]

    def classify(self, items: dict[str, Any], top: int = 10) -> dict:
        """Prediction for one example: ``items`` maps modality -> text or file path."""
        from polymodal.tasks.classify.fit import predict

        unknown = sorted(set(items) - set(self.modalities))
        if unknown:
            raise UsageError(f"this run uses {', '.join(self.modalities)}; got {', '.join(unknown)}")
        if not items:
            raise UsageError(f"give at least one of: {', '.join(self.modalities)}")
        x = {}
        for m, item in items.items():
            if m == "text" and not str(item).strip():
                raise UsageError("empty text")
            try:
                x[m] = self.encoder(m).encode([item]).float().numpy()
            except DecodeError as e:
                raise PolymodalError(f"{m} {e.path}: {e.reason}") from None
        res = predict(self.clf, x)
        out = {"problem": self.clf.problem, "modalities_given": sorted(items),
               "modalities_missing": [m for m in self.modalities if m not in items]}
        pred = res["prediction"][0]
        out["prediction"] = [_plain(p) for p in pred] if isinstance(pred, (list, tuple)) else \
            _plain(pred)
        if res["proba"] is not None and self.clf.labels:
            p = np.asarray(res["proba"][0], float)
            order = np.argsort(-p)[:top]
            out["probabilities"] = {str(self.clf.labels[i]): round(float(p[i]), 6) for i in order}
        weights = getattr(getattr(self.clf.model, "fusion", None), "last_weights", None)
        if weights is not None and weights.shape[-1] == len(self.modalities):
            out["modality_weights"] = {m: round(float(w), 4) for m, w in
                                       zip(self.modalities, weights[0].tolist())}
        return out


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def classify_routes(app: Any, guard: Guard, run_dir: str | Path, preload: bool) -> dict:
    """Add ``POST /classify`` to ``app``; returns the run's /health facts."""
    from fastapi import File, Form, UploadFile
    from starlette.concurrency import run_in_threadpool

    model = Classifier(run_dir)
    if preload:
        for m in model.modalities:
            warm_up(model.encoder(m), m)
    mods = model.modalities

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
            res = await run_in_threadpool(guard.run, lambda: model.classify(items), saved)
        finally:
            for p in saved:
                Path(p).unlink(missing_ok=True)
        res["latency_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return res

    labels = model.clf.labels
    return {"description": f"{model.clf.problem} with {model.clf.doc.get('method')} over "
                           f"{', '.join(mods)} (run {Path(run_dir).name})",
            "modalities": mods, "problem": model.clf.problem, "method": model.clf.doc["method"],
            "labels": [str(x) for x in labels] if labels else None}
