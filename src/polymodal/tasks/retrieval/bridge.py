"""Speech as a bridge (``fit retrieval --bridge asr``): audio is matched by what is said in it.

The audio side is encoded with ``asr:<text encoder>`` (`polymodal.features.encoders.asr`: the
Whisper tiny.en transcript embedded by the run's text encoder; cached like any feature, by
file digest and the ids of both models), so audio vectors and text vectors share one space.

* audio <-> text: **zero-shot**. No training: both heads are the identity (no centring), the
  score is the cosine of the transcript's and the text's embeddings. The run folder is a
  normal retrieval run (search / serve / eval work on it; an audio query is transcribed).
* audio <-> image (or video): **through text**. Heads are trained on the manifest's
  (text, image) pairs — never on audio — with the run's loss (`fit_retrieval`); at test time
  the audio's transcript vector goes through the text head. The text -> image figures of the
  same heads are kept in ``bridge.json`` under ``via_text`` (the bridge's ceiling: perfect
  transcripts).

The ridge / CCA baselines of ``baselines.json`` are fitted on the bridge's own features (the
transcript vectors), and ``bridge.json`` keeps a sample of test transcripts.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from polymodal.core.atomic import atomic_write_text
from polymodal.core.errors import PolymodalError, UsageError
from polymodal.core.runfolder import RunFolder
from polymodal.data.manifest import read_manifest
from polymodal.features.cache.features import FeatureSet
from polymodal.features.encoders import DEFAULT_ENCODERS
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.data import check_pairs, load_pairs


def bridge_encoders(cfg: RetrievalConfig) -> tuple[str, dict[str, str]]:
    """(the side that is audio, the encoder of each modality the run reads); a one-line error
    for a bridge without an audio side or an audio encoder set by hand."""
    if "audio" not in (cfg.query, cfg.target):
        raise UsageError(f"--bridge asr needs audio on one side; this run aligns {cfg.query} "
                         f"and {cfg.target}")
    other = cfg.target if cfg.query == "audio" else cfg.query
    text = cfg.encoders.get("text", DEFAULT_ENCODERS["text"])
    want = f"asr:{text}"
    if cfg.encoders.get("audio", want) != want:
        raise UsageError(f"--bridge asr encodes audio with '{want}' (the transcript in the text "
                         f"encoder's space); drop --encoder audio={cfg.encoders['audio']}")
    extra = sorted(set(cfg.encoders) - {"audio", "text", other})
    if extra:
        raise UsageError(f"--encoder {extra[0]}=…: this run aligns {cfg.query} and {cfg.target}")
    encs = {"audio": want, "text": text}
    if other != "text":
        encs[other] = cfg.encoders.get(other, DEFAULT_ENCODERS[other])
    return ("query" if cfg.query == "audio" else "target"), encs


def fit_bridge(cfg: RetrievalConfig, out: Path, resume: bool = False,
               with_baselines: bool = True, progress: bool = True) -> dict:
    """`fit_retrieval` for ``cfg.bridge == "asr"`` (see the module docstring)."""
    from polymodal.features.encode import encode_manifest
    from polymodal.tasks.retrieval.fit import evaluate_and_save

    t0 = time.perf_counter()
    audio_side, encoders = bridge_encoders(cfg)
    other = cfg.target if audio_side == "query" else cfg.query
    manifest = read_manifest(cfg.manifest, columns=cfg.columns)
    check_pairs(manifest, cfg.query, cfg.target, cfg.relevance)  # before any encoding
    if other != "text":
        check_pairs(manifest, "text", other, cfg.relevance)  # the heads learn text <-> other
    if cfg.features:
        raise UsageError("--bridge asr encodes its own features (the transcripts); drop "
                         "--features")
    RunFolder(out).begin()
    feats = encode_manifest(manifest, out / "features", encoders=encoders,
                            cache_dir=cfg.cache_dir, progress=progress,
                            modalities=list(encoders), backend=cfg.backend,
                            precision=cfg.encoder_precision).features
    data = load_pairs(feats, manifest, cfg.query, cfg.target, cfg.relevance)
    names = (cfg.query, cfg.target)
    if "test" not in set(data.split[data.query.rows]):
        raise PolymodalError(f"{manifest.path}: no test rows with {cfg.query}")
    extra: dict = {}
    if other == "text":
        model, train_info = zero_shot_model(data.query.x.shape[1]), {"zero_shot": True}
    else:
        model, train_info, extra = _through_text(cfg, out, audio_side, other, resume, progress)
    metrics, base, q, t = evaluate_and_save(out, cfg, model, data, feats, names, with_baselines)
    atomic_write_text(out / "bridge.json", json.dumps(
        {**extra, **_sample(manifest, feats, q, cfg)}, indent=1))
    method = "asr-0shot" if other == "text" else "asr-via-text"
    info = {"train": train_info, "bridge": "asr", "method": method, **extra,
            "n_test_queries": len(q.x),
            "n_test_targets": len(t.x), "seconds": round(time.perf_counter() - t0, 2)}
    RunFolder(out).update_json("run.json", info)  # keeps the provenance begin() wrote
    RunFolder(out).finish()
    return {"metrics": metrics, "baselines": base, **info}


def zero_shot_model(dim: int):
    """Identity heads on both sides, no centring: the cosine in the text encoder's space."""
    from polymodal.nn.dual_encoder import AlignModel

    specs = {s: {"kind": "identity", "in_dim": dim} for s in ("query", "target")}
    return AlignModel(specs, {s: torch.zeros(dim) for s in ("query", "target")}, {}).eval()


def _through_text(cfg: RetrievalConfig, out: Path, audio_side: str, other: str, resume: bool,
                  progress: bool):
    """Heads trained on (text, other) pairs with the text head where the audio side sits;
    -> (model, train info, {"via_text": text <-> other test metrics})."""
    from polymodal.tasks.retrieval.fit import fit_retrieval
    from polymodal.tasks.retrieval.predict import load_run

    side = {"query": "text", "target": other} if audio_side == "query" else \
        {"query": other, "target": "text"}
    sub = cfg.model_copy(update={**side, "bridge": "none", "features": str(out / "features"),
                                 "encoders": _text_encoders(cfg, other)})
    res = fit_retrieval(sub, out / "via_text", resume=resume, with_baselines=False,
                        progress=progress)
    run = load_run(out / "via_text")
    return run.model, res.get("train", {}), {"via_text": res["metrics"]}


def _text_encoders(cfg: RetrievalConfig, other: str) -> dict[str, str]:
    return {"text": cfg.encoders.get("text", DEFAULT_ENCODERS["text"]),
            other: cfg.encoders.get(other, DEFAULT_ENCODERS[other])}


def _sample(manifest, feats: FeatureSet, q, cfg: RetrievalConfig, n: int = 10) -> dict:
    """A few test rows: id, reference text, and the transcript the bridge matched on."""
    from polymodal.features.encoders.registry import build_encoder

    rows = [manifest.records[int(r)] for r in q.rows[:n]] if cfg.query == "audio" else []
    if not rows:
        return {"encoder": feats.encoder_id("audio")}
    enc = build_encoder(f"asr:{cfg.encoders.get('text', DEFAULT_ENCODERS['text'])}",
                        modality="audio", cache_dir=cfg.cache_dir)
    texts = enc.transcribe([enc.prepare(r.audio) for r in rows])
    return {"encoder": feats.encoder_id("audio"),
            "sample": [{"id": r.id, "text": (r.text or [None])[0], "transcript": t}
                       for r, t in zip(rows, texts)]}


__all__ = ["bridge_encoders", "fit_bridge", "zero_shot_model"]
