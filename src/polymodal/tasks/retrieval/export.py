"""``polymodal export RUN --format onnx [--int8] --out DIR``: a retrieval run as ONNX files that
`polymodal.tasks.retrieval.exported` runs without torch (layout in its docstring).

Encoders: ``minilm`` (its ONNX export with mean pooling, `text_onnx.export_fp32`; ``--int8``:
`text_onnx.quantize_int8`, dynamic int8 MatMuls) and ``efficientnet-lite0`` at a square size
(`image_onnx.export_fp32`; ``--int8`` leaves it fp32: static int8 fails the 0.99 cosine gate,
docs/RESULTS.md). Heads: ``AlignModel.embed(x, side)`` (centering + head + L2) traced per side.
The folder is staged in a temporary sibling and renamed into place, so a killed export leaves
no half folder; after writing, the export is checked against the torch run on up to
``CHECK_QUERIES`` of the run's own query items and the cosines are stored in export.json.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from polymodal.core.errors import UsageError
from polymodal.core.runfolder import RunFolder
from polymodal.features.encoders.runtimes import export_onnx, need_onnx
from polymodal.tasks.retrieval import exported

SUPPORTED = ("minilm", "efficientnet-lite0")
CHECK_QUERIES = 64


class _Embed(torch.nn.Module):
    def __init__(self, model, side: str):
        super().__init__()
        self.model, self.side = model, side

    def forward(self, x):
        return self.model.embed(x, self.side)


def _image_size(enc_id: str) -> int:
    size = next((p.split("=", 1)[1] for p in enc_id.split("|") if p.startswith("size=")), "")
    if not size.isdigit():
        raise UsageError(f"export supports efficientnet-lite0 at a fixed size, not '{size}'")
    return int(size)


def check_exportable(rf: RunFolder) -> dict[str, dict[str, str]]:
    """The run's encoders, after the checks that need no work (task, encoder names)."""
    if rf.task != "retrieval":
        raise UsageError("export supports retrieval runs for now")
    enc = rf.encoders
    for m, e in enc.items():
        if e["name"] not in SUPPORTED:
            raise UsageError(f"export supports the encoders {', '.join(SUPPORTED)} for now; the "
                             f"run's {m} encoder is '{e['name']}'")
        if e["name"] == "efficientnet-lite0":
            _image_size(e["id"])
    return enc


def _export_encoder(m: str, e: dict, tmp: Path, int8: bool) -> dict:
    if e["name"] == "minilm":
        from polymodal.features.encoders import text_onnx
        from polymodal.features.encoders.text import MINILM_DIM, MINILM_MAX_LENGTH, minilm_model_dir

        model_dir = minilm_model_dir()
        path = text_onnx.export_fp32(model_dir, tmp / f"encoder_{m}.onnx")
        if int8:
            # uint8 weights: accurate on every x86 CPU the folder may be loaded on (int8
            # weights saturate in onnxruntime's kernels on CPUs without VNNI)
            q = text_onnx.quantize_int8(path, tmp / f"encoder_{m}-int8.onnx",
                                        unsigned_weights=True)
            q.replace(path)
        shutil.copyfile(model_dir / "tokenizer.json", tmp / "tokenizer.json")
        return {"name": e["name"], "id": e["id"], "file": path.name, "dim": MINILM_DIM,
                "int8": int8, "tokenizer": "tokenizer.json", "max_length": MINILM_MAX_LENGTH}
    from polymodal.features.encoders import image_onnx
    from polymodal.features.encoders.image import (build_efficientnet_lite0,
                                                   efficientnet_lite0_weights, fold_batchnorm)

    net = fold_batchnorm(build_efficientnet_lite0(efficientnet_lite0_weights()))
    path = image_onnx.export_fp32(net, tmp / f"encoder_{m}.onnx")
    return {"name": e["name"], "id": e["id"], "file": path.name, "dim": 1280, "int8": False,
            "size": _image_size(e["id"])}


def _check_items(run, modality: str) -> list[str]:
    items: list[str] = []
    for rec in run.manifest.records:
        v = rec.get(modality)
        v = v[0] if isinstance(v, list) and v else v
        if v is not None and str(v).strip():
            items.append(str(v))
        if len(items) >= CHECK_QUERIES:
            break
    return items


def export_run(run_dir: str | Path, out: str | Path, fmt: str = "onnx", int8: bool = False
               ) -> dict:
    """Export the retrieval run at ``run_dir`` to ``out``; returns export.json's content."""
    from polymodal.tasks.retrieval.predict import Retriever

    if fmt != "onnx":
        raise UsageError(f"unknown export format '{fmt}'; choose onnx")
    rf = RunFolder.open(run_dir)
    enc = check_exportable(rf)
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not exported.is_export(out))):
        raise UsageError(f"--out {out} exists and is not an exported run; give a new folder")
    need_onnx()
    retriever = Retriever.load(run_dir)
    run, cfg = retriever.run, retriever.config
    index = run.index
    if not hasattr(index, "vectors"):
        raise UsageError(f"export needs an exact index; this run's is '{cfg.index}'")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        encoders = {m: _export_encoder(m, enc[m], tmp, int8) for m in retriever.modalities}
        heads = {}
        for side, m in (("query", cfg.query), ("target", cfg.target)):
            x = torch.zeros(2, encoders[m]["dim"])
            heads[side] = export_onnx(_Embed(run.model, side).eval(), (x,),
                                      tmp / f"head_{side}.onnx", ["features"], ["embedding"],
                                      {"features": {0: "batch"}, "embedding": {0: "batch"}}).name
        vectors = np.asarray(index.vectors, np.float32)
        np.save(tmp / "vectors.npy", vectors)
        items = [{"id": h.id, "row_id": h.row_id, "path": h.path, "text": h.text}
                 for h in (retriever.hit(0, 0.0, i) for i in index.ids)]
        (tmp / "items.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
        doc = {"format": exported.FORMAT, "version": exported.VERSION, "task": "retrieval",
               "run": str(Path(rf.root).resolve()), "query": cfg.query, "target": cfg.target,
               "dim": int(vectors.shape[1]), "count": len(items), "int8": int8,
               "encoders": encoders, "heads": heads}
        (tmp / exported.EXPORT_FILE).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        doc["check"] = compare(retriever, exported.ExportedRetriever.load(tmp),
                               _check_items(run, cfg.query))
        (tmp / exported.EXPORT_FILE).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return doc


def compare(torch_run, onnx_run, queries: list[str], k: int = 10) -> dict:
    """Cosine of the exported query vectors to the torch run's, and the share of ``queries``
    whose top-``k`` ids are the same (as a set: near-ties may swap places, a run fitted with a
    bf16 text backend scores ~1e-4 apart from fp32 onnx; ``same_order``: in order too)."""
    if not queries:
        return {"queries": 0}
    a, b = torch_run.embed(queries), onnx_run.embed(queries)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    k = min(k, len(onnx_run))
    ta = [[h.id for h in hs] for hs in torch_run.search(queries, k)]
    tb = [[h["id"] for h in hs] for hs in onnx_run.search(queries, k)]
    same = float(np.mean([set(x) == set(y) for x, y in zip(ta, tb)]))
    order = float(np.mean([x == y for x, y in zip(ta, tb)]))
    return {"queries": len(queries), "cosine_min": float(cos.min()),
            "cosine_mean": float(cos.mean()), "k": k, "same_top_k": same,
            "same_order": order}
