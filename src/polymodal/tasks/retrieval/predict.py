"""Use a fitted retrieval run: load it, search it with a text / image / audio query, evaluate it
on a manifest, draw a grid of hits."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.features.cache.features import FeatureSet
from polymodal.data.manifest import Manifest, Record, read_manifest
from polymodal.features.encoders import Encoder
from polymodal.features.encoders.base import is_single, rebuild_encoder, warm_up
from polymodal.core.runfolder import RunFolder, one_line as _one_line
from polymodal.core.splits import run_splits
from polymodal.core.errors import DecodeError, PolymodalError, UsageError
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.fit import AlignModel, evaluate_sides
from polymodal.tasks.retrieval.queries import check_k, check_query


@dataclass
class Hit:
    rank: int
    id: str
    score: float
    row_id: str
    path: str | None
    text: str | None
    start_s: float | None = None  # video targets: time of the frame that best matches

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        if d["start_s"] is None:
            del d["start_s"]
        return d


@dataclass
class RetrievalRun:
    """A loaded run folder."""

    root: Path
    config: RetrievalConfig
    model: AlignModel
    encoders: dict[str, str]
    index: Any
    encoder_ids: dict[str, str] | None = None
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
            # the backend the run's features were made with (its stored id), never "auto"
            self._enc[modality] = rebuild_encoder(
                self.encoders[modality], modality, (self.encoder_ids or {}).get(modality),
                where=str(self.root), cache_dir=self.config.cache_dir)
        return self._enc[modality]


def load_run(root: str | Path) -> RetrievalRun:
    """Load a retrieval run folder (`RunFolder`); a clear error when it is missing or corrupt."""
    from polymodal.core.config import validate_config
    from polymodal.index import load_index

    rf = RunFolder.open(root, "retrieval")
    doc = rf.doc
    spec = doc.get("model") or {"heads": doc.get("heads"), "scalars": doc.get("scalars")}
    if not isinstance(spec.get("heads"), dict) or not isinstance(spec.get("scalars"), list):
        raise PolymodalError(f"{rf.file('config.yaml')}: corrupt run config (no model heads)")
    cfg = validate_config(RetrievalConfig, rf.config, f"run config {rf.file('config.yaml')}")
    state = rf.load_weights()
    try:
        means = {s: state[f"mean_{s}"] for s in ("query", "target")}
        model = AlignModel(spec["heads"], means, {k: 0.0 for k in spec["scalars"]})
        model.load_state_dict(state)
    except Exception as e:
        raise PolymodalError(f"{rf.file('model.safetensors')}: corrupt weights or a config.yaml "
                             f"that does not match them ({type(e).__name__}: {_one_line(e)})"
                             ) from None
    model.eval()
    enc = rf.encoders
    return RetrievalRun(rf.root, cfg, model, {m: e["name"] for m, e in enc.items()},
                        load_index(rf.file("index")),
                        encoder_ids={m: e["id"] for m, e in enc.items()})


def embed_query(run: RetrievalRun, modality: str, item: Any) -> np.ndarray:
    """Shared-space vector ``[1, d]`` of one query item (text, or a path to an image / audio
    file); `Retriever.embed` for many."""
    return Retriever(run).embed([item], modality)


def _hit_fields(rec: Record | None, modality: str) -> tuple[str | None, str | None]:
    if rec is None:
        return None, None
    item = rec.get(modality)
    text = " | ".join(rec.text) if rec.text else None
    return (str(item) if modality in ("image", "audio", "video") and item is not None
            else None), text


def search_run(run: RetrievalRun, *, text: str | None = None, image: str | None = None,
               audio: str | None = None, k: int = 5) -> list[Hit]:
    """Top-k targets for one query (`Retriever.search` for many)."""
    given = [(m, v) for m, v in (("text", text), ("image", image), ("audio", audio))
             if v is not None]
    if len(given) != 1:
        raise UsageError("give exactly one query: --text, --image or --audio")
    modality, item = given[0]
    return Retriever(run).search(item, k, modality)


def run_features(run: RetrievalRun, m: Manifest, modalities: tuple[str, ...], own: bool,
                 progress: bool = True) -> FeatureSet:
    """Features of ``m`` for ``modalities``: the run's pre-encoded folder when it was fitted on
    one and ``m`` is its own manifest (``own``), otherwise encoded (cached) with its encoders."""
    from polymodal.features.encode import encode_manifest

    cfg = run.config
    if own and cfg.features and (Path(cfg.features) / "features.json").is_file():
        return FeatureSet.load(cfg.features)
    return encode_manifest(m, run.root / "eval_features", encoders={
        mod: run.encoder(mod) for mod in modalities}, cache_dir=cfg.cache_dir,
        progress=progress, modalities=modalities).features


def eval_run(run: RetrievalRun, manifest: str | Path | None = None, split: str | None = "test",
             progress: bool = True) -> dict:
    """Re-evaluate a run on a manifest split (default: its own manifest's test split)."""
    from polymodal.tasks.retrieval.data import load_pairs, with_frame_bags
    from polymodal.tasks.retrieval.pooled import embed_side

    cfg = run.config
    m = read_manifest(manifest or cfg.manifest, columns=cfg.columns)
    feats = run_features(run, m, (cfg.query, cfg.target), manifest is None, progress)
    data = with_frame_bags(load_pairs(feats, m, cfg.query, cfg.target, cfg.relevance,
                                      splits=run_splits(run.root) if manifest is None else None),
                           feats, cfg.video_pool)
    if split is not None:
        if split not in set(data.split):
            raise UsageError(f"split '{split}' has no rows in {m.path}")
        q, t = data.side_split(data.query, split), data.side_split(data.target, split)
    else:
        q, t = data.query, data.target
    qe, te = embed_side(run.model, q, "query"), embed_side(run.model, t, "target")
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


class Retriever:
    """A fitted retrieval run as one object (what ``polymodal.load(RUN)`` returns for one):
    ``search`` (many queries encoded in one batch, one index call), ``embed`` (shared-space
    vectors) and ``evaluate``. Queries are texts or image / audio paths of the modality given
    or, by default, of the run's query side."""

    def __init__(self, run: RetrievalRun):
        self.run = run
        self._by_id: dict[str, Record] | None = None

    @classmethod
    def load(cls, root: str | Path) -> "Retriever":
        return cls(load_run(root))

    @property
    def root(self) -> Path:
        return self.run.root

    @property
    def config(self) -> RetrievalConfig:
        return self.run.config

    @property
    def modalities(self) -> list[str]:
        """The aligned modalities: query side first."""
        return list(dict.fromkeys((self.config.query, self.config.target)))

    def __len__(self) -> int:
        return len(self.run.index)

    @property
    def by_id(self) -> dict[str, Record]:
        if self._by_id is None:
            self._by_id = {r.id: r for r in self.run.manifest.records}
        return self._by_id

    def warm_up(self) -> None:
        """Load and warm up the encoders now instead of on the first query."""
        for m in self.modalities:
            warm_up(self.run.encoder(m))

    def check_k(self, k: int) -> None:
        check_k(k, len(self))

    def check(self, query: Any, modality: str | None = None) -> str:
        """The modality of ``query`` after the checks that need no encoding (`check_query`)."""
        return check_query(query, modality, self.config.query, self.config.target)

    def embed(self, items: Any, modality: str | None = None) -> np.ndarray:
        """Shared-space vectors: one item -> ``[d]``, a list -> ``[N, d]`` (one batch)."""
        single = is_single(items)
        batch = [items] if single else list(items)
        if not batch:
            raise UsageError("no queries given")
        modality = [self.check(q, modality) for q in batch][0]
        try:
            x = self.run.encoder(modality).encode([str(q) for q in batch]).float()
        except DecodeError as e:
            raise PolymodalError(f"query {modality} {e.path}: {e.reason}") from None
        side = "query" if modality == self.config.query else "target"
        with torch.inference_mode():
            v = self.run.model.embed(x, side).numpy()
        return v[0] if single else v

    def search(self, queries: Any, k: int = 5, modality: str | None = None
               ) -> list[Hit] | list[list[Hit]]:
        """Top-``k`` targets: one query -> its hits, a list -> one hit list per query (encoded
        in one batch and searched in one index call)."""
        self.check_k(k)
        single = is_single(queries)
        batch = [queries] if single else list(queries)
        if not batch:
            return []
        qv = self.embed(batch, modality)
        scores, ids = self.run.index.search(qv, k)
        hits = [[self.hit(rank, float(s), str(i)) for rank, (s, i) in
                 enumerate(zip(scores[j], ids[j]), 1)] for j in range(len(batch))]
        scorer = self.frame_scorer
        if scorer is not None:  # the moment: the hit's frame most similar to the query
            for j, hs in enumerate(hits):
                for h in hs:
                    bt = scorer.best_time(qv[j], h.row_id)
                    h.start_s = None if bt is None else round(bt[0], 3)
        return hits[0] if single else hits

    @property
    def frame_scorer(self):
        """`FrameScorer` of a run whose target is video with per-frame vectors, else None."""
        if not hasattr(self, "_scorer"):
            self._scorer = None
            if self.config.target == "video":
                from polymodal.tasks.retrieval.moments import FrameScorer, run_feature_folder

                fs = FeatureSet.load(run_feature_folder(self.root, self.config))
                if fs.has_frames("video"):
                    self._scorer = FrameScorer(fs, self.run.model)
        return self._scorer

    def hit(self, rank: int, score: float, vector_id: str) -> Hit:
        """A `Hit` for an index vector id (``id#n`` vectors map to manifest row ``id``)."""
        row_id = vector_id if vector_id in self.by_id else vector_id.rsplit("#", 1)[0]
        path, text = _hit_fields(self.by_id.get(row_id), self.config.target)
        return Hit(rank, vector_id, score, row_id, path, text)

    def target_file(self, row_id: str) -> Path | None:
        """The indexed file of manifest row ``row_id`` (None for texts and unknown ids)."""
        rec = self.by_id.get(row_id)
        item = rec.get(self.config.target) if rec is not None else None
        if item is None or isinstance(item, list) or not Path(item).is_file():
            return None
        return Path(item)

    def evaluate(self, manifest: str | Path | None = None, split: str | None = "test",
                 progress: bool = False) -> dict:
        """`eval_run`: recall@k / mAP / … on a manifest split (default: the run's own test
        split; ``split=None`` or ``"all"``: every row)."""
        return eval_run(self.run, manifest, None if split == "all" else split, progress)


def read_queries(path: str | Path, modality: str = "text") -> list[str]:
    """Queries from a text file, one per non-blank line. For image / audio queries a line is a
    file path; relative paths resolve against the file's folder, as in manifests."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UsageError(f"queries file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read the queries ({_one_line(e)})") from None
    queries = [ln.strip() for ln in lines if ln.strip()]
    if not queries:
        raise UsageError(f"{path}: no queries (one per line)")
    if modality != "text":
        queries = [q if Path(q).expanduser().is_absolute() else str(path.parent / q)
                   for q in queries]
    return queries
