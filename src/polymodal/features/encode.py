"""Encode a manifest into cached features: the first step of every task (the public API).

`encode_manifest` encodes every modality of a manifest into a feature folder, `manifest_features`
gives a task its features (a folder already encoded, or a cached encode), `encode` gives vectors
of texts or files in Python. All go through the content-addressed feature cache: each cell is
keyed by encoder id + content digest. Bad cells are skipped and reported (file, row, column,
reason); the run goes on.

The work is split by responsibility: `polymodal.features.encode_loop` encodes one modality,
`polymodal.features.encode_report` has the counts, the summary table and the row notes,
`polymodal.features.encode_output` writes the files of the (staged) output folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from polymodal.core.errors import PolymodalError, Problem, UsageError
from polymodal.data.loaders import check_file
from polymodal.data.manifest import Manifest, read_manifest
from polymodal.features.cache.features import FeatureSet, check_replaceable, feature_folder
from polymodal.features.cache.store import FeatureStore, FileHasher, default_cache_dir, text_digest
from polymodal.features.decode_pool import DECODE, DEFAULT_DECODE, same_bytes
from polymodal.features.encode_loop import encode_modality
from polymodal.features.encode_output import WRITE_ROWS, write_folder, write_frames
from polymodal.features.encode_report import EncodeResult, ModalityStats, row_order
from polymodal.features.encoders import DEFAULT_ENCODERS, Encoder, build_encoder
from polymodal.features.engines import get_engine

__all__ = ["WRITE_ROWS", "EncodeResult", "ModalityStats", "encode", "encode_manifest",
           "manifest_features", "resolve_encoders"]


def resolve_encoders(manifest: Manifest, spec: dict[str, Any] | None,
                     modalities: Sequence[str] | None = None, backend: str = "auto",
                     precision: str = "auto", cache_dir: str | Path | None = None
                     ) -> dict[str, Encoder]:
    """Encoders for ``modalities`` (default: every modality of the manifest): ``spec`` maps
    modality -> name or Encoder and overrides only the modalities it names; the others use the
    offline defaults. Names are built with ``backend`` / ``precision`` (one value, or per
    modality: ``text=onnx,image=torch``; `polymodal.features.encoders.backends`), every one
    checked before any model loads. Naming a modality the manifest lacks (or that is not encoded) is an
    error."""
    spec = dict(spec or {})
    mods = list(modalities) if modalities is not None else manifest.modalities
    for m in [*spec, *mods]:
        if m not in manifest.modalities:
            raise UsageError(f"--encoder {m}=…: the manifest has no '{m}' column (it has "
                             f"{', '.join(manifest.modalities)})")
    extra = sorted(set(spec) - set(mods))
    if extra:
        raise UsageError(f"--encoder {extra[0]}=…: only {', '.join(mods)} is encoded here")
    from polymodal.features.encoders.backends import parse_setting, setting_for

    parse_setting(backend, "backend"), parse_setting(precision, "precision")
    out: dict[str, Encoder] = {}
    for m in mods:
        e = spec.get(m, DEFAULT_ENCODERS[m])
        out[m] = build_encoder(e, modality=m, backend=setting_for(backend, m),
                               precision=setting_for(precision, m, "precision"),
                               cache_dir=str(cache_dir) if cache_dir else None
                               ) if isinstance(e, str) else e
    return out


def encode_manifest(manifest: str | Path | Manifest, out: str | Path,
                    encoders: dict[str, Any] | None = None, cache_dir: str | Path | None = None,
                    batch_size: int | None = None, workers: int = 2, progress: bool = True,
                    columns: dict[str, str] | None = None,
                    modalities: Sequence[str] | None = None, backend: str = "auto",
                    precision: str = "auto", engine: Any = "local",
                    engine_options: dict[str, Any] | None = None,
                    decode: str | None = None) -> EncodeResult:
    """Encode ``modalities`` (default: every modality) of a manifest into ``out`` (see
    `FeatureSet` for the layout), reusing and filling the content-addressed cache in
    ``cache_dir``. ``encoders`` overrides the default encoder of the modalities it names;
    ``backend`` / ``precision`` choose how named encoders run (`resolve_encoders`).
    ``engine``: ``"local"`` (a thread pool here), ``"ray"`` (Ray Data actors,
    `polymodal.features.engines.ray_engine`; ``engine_options``: ``address``, ``actors``,
    ``num_cpus_per_actor``) or a built engine (`EncodeEngine`); every engine writes the same
    folder and the same cache. ``decode``: ``"threads"`` or ``"processes"`` (``workers`` of
    them decode images for the local engine; `polymodal.features.decode_pool`; default
    ``DEFAULT_DECODE``).

    ``out`` is written as a unit (`feature_folder`): an encode that fails or is killed leaves
    the previous folder as it was, never a mix of old and new files."""
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, columns=columns)
    out = Path(out)
    if decode is not None and decode not in DECODE:
        raise UsageError(f"--decode {decode}: choose from {', '.join(DECODE)}")
    if decode is not None and engine not in (None, "local"):
        raise UsageError("--decode is an option of --engine local")
    check_replaceable(out)  # before any work: never replace a folder holding other things
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    run_on = get_engine(engine, progress, cache, engine_options)  # before any model loads
    encs = resolve_encoders(manifest, encoders, modalities, backend, precision, cache)
    threads = torch.get_num_threads()  # encoders use every core; restored below
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    skipped = [p for p in manifest.problems if p.level == "error"]
    warnings = [p for p in manifest.problems if p.level != "error"]
    notes: list[Problem] = []
    stats: dict[str, ModalityStats] = {}
    meta_mods: dict[str, dict] = {}
    collected = 0
    with feature_folder(out) as stage:  # becomes ``out`` once complete
        hasher = FileHasher(cache)
        try:
            for m, enc in encs.items():
                store = FeatureStore(cache, enc.id)
                collected += store.collected
                try:
                    bs = batch_size or getattr(enc, "batch_size", 32)
                    stats[m] = encode_modality(manifest, m, enc, store, hasher, stage, bs,
                                               workers, progress, skipped, notes, run_on,
                                               decode or DEFAULT_DECODE)
                    frames = (write_frames(stage, manifest, m, enc, hasher)
                              if hasattr(enc, "frame_vectors") else {})
                finally:
                    store.close()
                    if hasattr(enc, "close"):
                        enc.close()
                meta_mods[m] = {"encoder": enc.id, "name": enc.name, "dim": int(enc.dim),
                                "count": stats[m].items - stats[m].skipped, **frames}
        finally:
            hasher.close()
            torch.set_num_threads(threads)
        skipped.sort(key=row_order)
        notes.sort(key=row_order)
        write_folder(stage, manifest, meta_mods, skipped, notes)
    return EncodeResult(out=out, rows=len(manifest), stats=stats, skipped=skipped,
                        warnings=warnings, notes=notes, collected=collected)


def manifest_features(manifest: Manifest, modalities: Sequence[str], encoders: dict[str, str],
                      features: str | Path | None, out: Path, cache_dir: str | Path | None,
                      progress: bool = True, require: Sequence[str] = (),
                      backend: str = "auto", precision: str = "auto") -> FeatureSet:
    """Features of ``modalities`` for ``manifest``: the folder ``features`` (which must have been
    encoded from this manifest), else a cached encode into ``out/features`` with ``encoders``
    (defaults for the others). A clear error when the manifest lacks one of ``require`` (the
    columns the task needs, in this order) or of ``modalities``."""
    for m in dict.fromkeys([*require, *modalities]):
        if m not in manifest.modalities:
            raise UsageError(f"{manifest.path}: no {m} column "
                             f"(has {', '.join(manifest.modalities)})")
    if features:
        fs = FeatureSet.load(features)
        if fs.ids != manifest.ids:
            raise UsageError(f"{features} was not encoded from {manifest.path} (ids differ)")
        return fs
    extra = sorted(set(encoders) - set(modalities))
    if extra:
        raise UsageError(f"--encoder {extra[0]}=…: this task encodes only "
                         f"{', '.join(modalities)}")
    return encode_manifest(manifest, out / "features", encoders=encoders, cache_dir=cache_dir,
                           progress=progress, modalities=modalities, backend=backend,
                           precision=precision).features


def encode(items: Any, encoder: str | Encoder = "minilm", modality: str | None = None,
           cache_dir: str | Path | None = None, batch_size: int | None = None,
           backend: str = "auto", precision: str = "auto") -> np.ndarray:
    """Vectors of texts or image / audio files through the content-addressed feature cache
    (``polymodal.encode``): one item -> ``[dim]``, a list -> ``[N, dim]`` float32.

    ``encoder``: a name (``minilm``, ``efficientnet-lite0``, ``logmel``, ``hf:<model>`` with
    ``modality``) or a built `Encoder`. Items already in the cache (same encoder id, same text
    or file bytes, e.g. encoded by ``polymodal encode``) are read from it, the others are
    encoded and stored; the values are the cache's (float16 precision), so they equal what a
    fit on the same items sees. A bad item raises a one-line `PolymodalError` naming it.
    ``backend`` / ``precision``: how a named encoder runs (`build_encoder`)."""
    from polymodal.features.encoders.base import is_single

    single = is_single(items)
    batch = [items] if single else list(items)
    enc = build_encoder(encoder, modality=modality, backend=backend, precision=precision,
                        cache_dir=str(cache_dir) if cache_dir else None
                        ) if isinstance(encoder, str) else encoder
    if modality is not None and enc.modality != modality:
        raise UsageError(f"encoder '{enc.name}' encodes {enc.modality}, not {modality}")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    keys = _item_keys(batch, enc.modality, cache)
    files = enc.modality != "text"
    dim = int(enc.dim)
    store = FeatureStore(cache, enc.id)
    try:
        out, ok = store.fetch(keys, dim)  # verified; bad entries dropped and encoded again
        todo = {k: x for k, x, o in zip(keys, batch, ok) if not o}
        if todo:
            try:
                vec = np.asarray(enc.encode(list(todo.values()), batch_size=batch_size,
                                            numpy=True), np.float32)
            except BaseException:
                if files:  # a file that failed to decode is always hashed again
                    _forget(cache, todo.values())
                raise
            changed = [x for k, x in todo.items() if files and not same_bytes(x, k)]
            if changed:
                _forget(cache, changed)
                raise PolymodalError(f"{enc.modality} file {changed[0]}: changed while it was "
                                     "being encoded; try again")
            with np.errstate(over="ignore"):
                bad = [x for x, v in zip(todo.values(), vec)
                       if not np.isfinite(v.astype(np.float16)).all()]
            if bad:
                raise PolymodalError(f"{enc.modality} {bad[0]}: encoder '{enc.name}' produced "
                                     "non-finite values")
            store.put(list(todo), vec)
            out, ok = store.fetch(keys, dim)
            if not ok.all():
                raise PolymodalError(f"{store.root}: cache entries failed verification right "
                                     "after they were written (a failing disk?); try again")
    finally:
        store.close()
    out = out.astype(np.float32)
    return out[0] if single else out


def _forget(cache: Path, paths: Any) -> None:
    hasher = FileHasher(cache)
    try:
        for p in paths:
            hasher.forget(Path(p))
    finally:
        hasher.close()


def _item_keys(items: Sequence[Any], modality: str, cache: Path) -> list[str]:
    """Cache keys (content digests) of texts or files, as `encode_manifest` computes them."""
    if modality == "text":
        for x in items:
            if not isinstance(x, str) or not x.strip():
                raise UsageError(f"text items must be non-empty strings, got {x!r}")
        return [text_digest(x) for x in items]
    hasher = FileHasher(cache)
    try:
        keys = []
        for x in items:
            try:
                check_file(x)  # DecodeError names the file: not regular, empty, too large
                keys.append(hasher.digest(Path(x)))
            except FileNotFoundError:
                raise PolymodalError(f"{modality} file not found: {x}") from None
            except (OSError, TypeError) as e:
                raise PolymodalError(f"cannot read {modality} file {x!r}: "
                                     f"{getattr(e, 'strerror', None) or e}") from None
        return keys
    finally:
        hasher.close()
