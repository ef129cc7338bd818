"""``polymodal encode … --engine ray``: decode and encode the cells of a manifest in Ray Data
``map_batches`` actors (one model per actor, ``num_cpus`` cores each), on this machine
(``ray.init`` with every core) or on a cluster (``address="auto"`` / ``ray://…``).

What runs where:

* this process reads and validates the manifest, hashes the files, looks the cells up in the
  content-addressed cache and writes the feature folder, exactly as ``--engine local`` does
  (`encode_modality`); only the cells not in the cache go to Ray;
* those cells become a Ray dataset of blocks of one encoder batch each (``key``, ``item``: a
  text or a file path), in the local engine's order, so every actor batch holds the cells a
  local batch would (the same padding, the same vectors);
* each actor (`_EncodeActor`) rebuilds the encoder from its name and checks that it gives the
  same encoder id (`rebuild_encoder`), with ``num_cpus`` torch / runtime threads; it decodes
  each cell (`prepare_cell`: the same checks and the same skip reasons as local), encodes the
  good ones and returns ``key``, ``err`` and ``vec`` (float32);
* the vectors stream back to this process, which checks them and writes them to the cache, one
  batch at a time (`commit`): a single writer, so the cache needs no locking across machines,
  and a killed encode keeps every batch that came back.

On a cluster every node needs polymodal (and the model files) installed and the media paths of
the manifest readable at the same place (a shared filesystem); only keys, paths and vectors
travel. Importing this module imports no Ray.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from polymodal.core.errors import PolymodalError, UsageError
from polymodal.core.lazy import need

EXTRA = "pip install 'polymodal[ray]'"


def need_ray() -> Any:
    """The ``ray`` module with Ray Data, or a one-line error naming the extra."""
    return need("ray", "ray.data", message=f"--engine ray needs the package ray[data] ({EXTRA})")


class _EncodeActor:
    """One encoder per actor, built once; called with one batch of cells at a time."""

    def __init__(self, name: str, modality: str, encoder_id: str, cache_dir: str | None,
                 threads: int, root: str | None):
        import torch

        from polymodal.features.encoders.base import rebuild_encoder

        torch.set_num_threads(max(1, threads))  # before the model (runtimes read it) loads
        self.encoder = rebuild_encoder(name, modality, expected_id=encoder_id,
                                       where=f"--engine ray ({modality} encoder)",
                                       cache_dir=cache_dir)
        if self.encoder.id != encoder_id:
            raise PolymodalError(f"--engine ray: the {modality} encoder '{name}' gives id "
                                 f"'{self.encoder.id}' in a Ray actor, '{encoder_id}' here; "
                                 "use --engine local")
        self.root = Path(root) if root else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from polymodal.features.encode_loop import prepare_cell

        enc = self.encoder
        keys = [str(k) for k in batch["key"]]
        errs: list[str] = []
        good: list[int] = []
        prepared: list[Any] = []
        for j, (k, item) in enumerate(zip(keys, batch["item"])):
            x, err = prepare_cell(enc, str(item), k, self.root)
            errs.append(err or "")
            if err is None:
                good.append(j)
                prepared.append(x)
        vec = np.zeros((len(keys), int(enc.dim)), np.float32)
        if prepared:
            with torch.inference_mode():
                vec[good] = enc.encode_prepared(prepared).float().cpu().numpy()
        return {"key": np.array(keys, dtype=object), "err": np.array(errs, dtype=object),
                "vec": vec}


class RayEngine:
    """An `EncodeEngine` on Ray Data. ``address``: a running cluster (``"auto"``,
    ``"ray://host:10001"``; default: start Ray on this machine with every core, unless Ray is
    already initialised in this process, e.g. ``ray.init(num_cpus=2)``); ``actors``: how many
    encoder actors (default: the cluster's CPUs // ``num_cpus_per_actor``);
    ``num_cpus_per_actor``: cores, and torch / ONNX / OpenVINO threads, of each actor."""

    def __init__(self, address: str | None = None, actors: int | None = None,
                 num_cpus_per_actor: int = 1, progress: bool = True,
                 cache_dir: str | Path | None = None):
        if actors is not None and actors < 1:
            raise UsageError(f"--actors {actors}: must be at least 1")
        if num_cpus_per_actor < 1:
            raise UsageError(f"--num-cpus-per-actor {num_cpus_per_actor}: must be at least 1")
        need_ray()  # before any work: a missing extra is a one-line error
        self.address, self.actors, self.cpus = address, actors, int(num_cpus_per_actor)
        self.progress = progress
        self.cache_dir = str(cache_dir) if cache_dir else None

    def _connect(self) -> Any:
        ray = need_ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False,
                         logging_level=logging.WARNING, log_to_driver=False)
            except ConnectionError as e:
                raise PolymodalError(f"--address {self.address}: cannot connect to a Ray "
                                     f"cluster ({str(e).splitlines()[0]})") from None
        return ray

    def pool_size(self, ray: Any) -> int:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        if self.cpus > cpus:
            raise UsageError(f"--num-cpus-per-actor {self.cpus}: the Ray cluster has only "
                             f"{cpus} CPUs")
        return self.actors or max(1, cpus // self.cpus)

    def __call__(self, encoder: Any, cells: list[tuple[str, Any]], batch_size: int,
                 root: Path | None, commit: Callable, reject: Callable) -> None:
        if not cells:
            return
        ray = self._connect()
        import pyarrow as pa
        from ray.data import ActorPoolStrategy, DataContext

        blocks = [pa.table({"key": [k for k, _ in cells[s:s + batch_size]],
                            "item": [str(x) for _, x in cells[s:s + batch_size]]})
                  for s in range(0, len(cells), batch_size)]  # one block = one local batch
        ctx = DataContext.get_current()
        saved = (ctx.enable_progress_bars, ctx.execution_options.preserve_order)
        ctx.enable_progress_bars = False  # the caller's bar counts the cells that come back
        ctx.execution_options.preserve_order = True  # same cache order as local
        log = logging.getLogger("ray.data")
        level = log.level
        log.setLevel(logging.WARNING)  # not Ray Data's plan and timing lines on every encode
        try:
            ds = ray.data.from_arrow(blocks).map_batches(
                _EncodeActor, batch_size=batch_size, batch_format="numpy",
                fn_constructor_kwargs={
                    "name": encoder.name, "modality": encoder.modality,
                    "encoder_id": encoder.id, "cache_dir": self.cache_dir,
                    "threads": self.cpus, "root": str(root) if root else None},
                compute=ActorPoolStrategy(size=min(self.pool_size(ray), len(blocks))),
                num_cpus=self.cpus,
                udf_modifying_row_count=False)
            for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                keys = [str(k) for k in out["key"]]
                errs = [str(e) for e in out["err"]]
                ok = np.array([not e for e in errs], bool)
                for k, e in zip(keys, errs):
                    if e:
                        reject(k, e)
                if ok.any():
                    commit([k for k, o in zip(keys, ok) if o],
                           np.asarray(out["vec"], np.float32)[ok])
        except PolymodalError:
            raise
        except Exception as e:  # an actor's own error is one line, not Ray's traceback
            raise _one_line(e) from None
        finally:
            ctx.enable_progress_bars, ctx.execution_options.preserve_order = saved
            log.setLevel(level)


def _one_line(e: BaseException) -> PolymodalError:
    """The `PolymodalError` an actor raised (found in Ray's wrappers), else a one-line error."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, PolymodalError):
            return PolymodalError(str(cur))
        cur = getattr(cur, "cause", None) or cur.__cause__ or cur.__context__
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return PolymodalError(f"--engine ray failed: {type(e).__name__}: "
                          f"{lines[-1] if lines else e}")
