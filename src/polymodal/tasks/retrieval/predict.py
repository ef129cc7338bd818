"""Use a fitted retrieval run: load it, search it with a text / image / audio query, evaluate it
on a manifest, draw a grid of hits."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from polymodal.features.cache.features import FeatureSet
from polymodal.data.manifest import Manifest, Record, read_manifest
from polymodal.features.encoders import Encoder, build_encoder
from polymodal.core.errors import DecodeError, PolymodalError, UsageError
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.fit import AlignModel, evaluate_sides


@dataclass
class Hit:
    rank: int
    id: str
    score: float
    row_id: str
    path: str | None
    text: str | None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class RetrievalRun:
    """A loaded run folder."""

    root: Path
    config: RetrievalConfig
    model: AlignModel
    encoders: dict[str, str]
    index: Any
    _manifest: Manifest | None = None
    _enc: dict[str, Encoder] | None = None

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = read_manifest(self.config.manifest, columns=self.config.columns)
        return self._manifest

    def encoder(self, modality: str) -> Encoder:
        self._enc = self._enc or {}
        if modality not in self._enc:
            self._enc[modality] = build_encoder(self.encoders[modality], modality=modality)
        return self._enc[modality]


def load_run(root: str | Path) -> RetrievalRun:
    """Load a retrieval run folder; a clear error when it is missing or corrupt."""
    from safetensors.torch import load_file

    from polymodal.index import load_index

    root = Path(root)
    if root.is_file():
        raise PolymodalError(f"{root}: is a file, not a run folder")
    if not root.is_dir():
        raise PolymodalError(f"{root}: run folder not found")
    cfg_path = root / "config.yaml"
    try:
        doc = yaml.safe_load(cfg_path.read_text())
        cfg = RetrievalConfig.model_validate(doc["config"])
        heads, scalars, encoders = doc["heads"], doc["scalars"], doc["encoders"]
    except FileNotFoundError:
        raise PolymodalError(f"{root}: not a retrieval run (no config.yaml)") from None
    except Exception as e:
        raise PolymodalError(f"{cfg_path}: corrupt run config "
                             f"({type(e).__name__}: {_one_line(e)})") from None
    if doc.get("task") != "retrieval":
        raise PolymodalError(f"{root}: a '{doc.get('task')}' run, not a retrieval run")
    try:
        state = load_file(str(root / "model.safetensors"))
        means = {s: state[f"mean_{s}"] for s in ("query", "target")}
        model = AlignModel(heads, means, {k: 0.0 for k in scalars})
        model.load_state_dict(state)
    except FileNotFoundError:
        raise PolymodalError(f"{root}: model.safetensors is missing") from None
    except Exception as e:
        raise PolymodalError(f"{root / 'model.safetensors'}: corrupt weights or a config.yaml "
                             f"that does not match them ({type(e).__name__}: {_one_line(e)})"
                             ) from None
    model.eval()
    return RetrievalRun(root, cfg, model, encoders, load_index(root / "index"))


def _one_line(e: BaseException, limit: int = 200) -> str:
    """An exception message on one line (YAML / torch messages span several), shortened."""
    msg = " ".join(str(e).split())
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def embed_query(run: RetrievalRun, modality: str, item: Any) -> np.ndarray:
    """Shared-space vector of one query item (text, or a path to an image / audio file)."""
    cfg = run.config
    if modality == cfg.query:
        side = "query"
    elif modality == cfg.target:
        side = "target"
    else:
        raise UsageError(f"this run aligns {cfg.query} and {cfg.target}; cannot search with "
                         f"{modality}")
    if modality == "text":
        if not isinstance(item, str) or not item.strip():
            raise UsageError("empty text query")
    enc = run.encoder(modality)
    try:
        x = enc.encode([item]).float()
    except DecodeError as e:
        raise PolymodalError(f"query {modality} {e.path}: {e.reason}") from None
    with torch.inference_mode():
        return run.model.embed(x, side).numpy()


def _hit_fields(rec: Record | None, modality: str) -> tuple[str | None, str | None]:
    if rec is None:
        return None, None
    item = rec.get(modality)
    text = " | ".join(rec.text) if rec.text else None
    return (str(item) if modality in ("image", "audio") and item is not None else None), text


def search_run(run: RetrievalRun, *, text: str | None = None, image: str | None = None,
               audio: str | None = None, k: int = 5) -> list[Hit]:
    """Top-k targets for one query."""
    given = [(m, v) for m, v in (("text", text), ("image", image), ("audio", audio))
             if v is not None]
    if len(given) != 1:
        raise UsageError("give exactly one query: --text, --image or --audio")
    n = len(run.index)
    if k <= 0 or k > n:
        raise UsageError(f"k={k} must be between 1 and the index size {n}")
    modality, item = given[0]
    if modality not in (run.config.query, run.config.target):
        raise UsageError(f"this run aligns {run.config.query} and {run.config.target}; cannot "
                         f"search with {modality}")
    if modality == "text" and not str(item).strip():
        raise UsageError("empty text query")
    if modality != "text" and not Path(item).is_file():
        raise UsageError(f"query {modality} file not found: {item}")
    q = embed_query(run, modality, item)
    scores, ids = run.index.search(q, k)
    by_id = {r.id: r for r in run.manifest.records}
    hits = []
    for rank, (s, i) in enumerate(zip(scores[0], ids[0]), 1):
        row_id = str(i).rsplit("#", 1)[0] if str(i) not in by_id else str(i)
        path, txt = _hit_fields(by_id.get(row_id), run.config.target)
        hits.append(Hit(rank, str(i), float(s), row_id, path, txt))
    return hits


def run_features(run: RetrievalRun, m: Manifest, modalities: tuple[str, ...], own: bool,
                 progress: bool = True) -> FeatureSet:
    """Features of ``m`` for ``modalities``: the run's pre-encoded folder when it was fitted on
    one and ``m`` is its own manifest (``own``), otherwise encoded (cached) with its encoders."""
    from polymodal.features.encode import encode_manifest

    cfg = run.config
    if own and cfg.features and (Path(cfg.features) / "features.json").is_file():
        return FeatureSet.load(cfg.features)
    return encode_manifest(m, run.root / "eval_features", encoders={
        mod: run.encoders[mod] for mod in modalities}, cache_dir=cfg.cache_dir,
        progress=progress).features


def eval_run(run: RetrievalRun, manifest: str | Path | None = None, split: str | None = "test",
             progress: bool = True) -> dict:
    """Re-evaluate a run on a manifest split (default: its own manifest's test split)."""
    from polymodal.tasks.retrieval.data import load_pairs

    cfg = run.config
    m = read_manifest(manifest or cfg.manifest, columns=cfg.columns)
    feats = run_features(run, m, (cfg.query, cfg.target), manifest is None, progress)
    data = load_pairs(feats, m, cfg.query, cfg.target, cfg.relevance)
    if split is not None:
        if split not in set(data.split):
            raise UsageError(f"split '{split}' has no rows in {m.path}")
        q, t = data.side_split(data.query, split), data.side_split(data.target, split)
    else:
        q, t = data.query, data.target
    qe, te = run.model.embed_numpy(q.x, "query"), run.model.embed_numpy(t.x, "target")
    return evaluate_sides(qe, te, data.relevance(q, t), (cfg.query, cfg.target))


def hits_grid(hits: list[Hit], out: str | Path, query_label: str = "", tile: int = 160) -> Path:
    """A picture of the hits (images as thumbnails, otherwise their text) with scores."""
    from PIL import Image, ImageDraw

    from polymodal.core.atomic import atomic_path
    from polymodal.data.loaders import load_image

    pad, cap = 6, 34
    w = len(hits) * (tile + pad) + pad
    canvas = Image.new("RGB", (max(w, 320), tile + cap + 26), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 4), f"query: {query_label}"[:120], fill="black")
    for i, h in enumerate(hits):
        x = pad + i * (tile + pad)
        try:
            im = load_image(h.path) if h.path and h.path.lower().endswith(
                (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")) else None
        except DecodeError:
            im = None
        if im is not None:
            im.thumbnail((tile, tile))
            canvas.paste(im, (x + (tile - im.width) // 2, 22 + (tile - im.height) // 2))
        else:
            draw.rectangle([x, 22, x + tile, 22 + tile], outline="gray")
            draw.multiline_text((x + 4, 26), _wrap(h.text or h.id, 24), fill="black")
        draw.text((x, 24 + tile), f"#{h.rank} {h.score:.3f}\n{h.row_id[:26]}", fill="black")
    out = Path(out)
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")
    return out


def _wrap(s: str, width: int) -> str:
    words, lines, cur = s.split(), [], ""
    for wd in words:
        if len(cur) + len(wd) + 1 > width:
            lines.append(cur)
            cur = wd
        else:
            cur = f"{cur} {wd}".strip()
    lines.append(cur)
    return "\n".join(lines[:8])


def hits_json(hits: list[Hit]) -> str:
    return json.dumps([h.to_dict() for h in hits], indent=1)
