"""Where an encode decodes and encodes its cells: ``local`` (a thread pool in this process, the
default) or ``ray`` (Ray Data actors, `polymodal.features.engines.ray_engine`, the ``[ray]``
extra). Every engine writes the same feature folder and the same cache: the engine only turns
cells into vectors (`polymodal.features.encode_loop.EncodeEngine`), this process checks and
caches them. Importing this package imports no Ray.
"""
from __future__ import annotations

from typing import Any

from polymodal.core.errors import UsageError

ENGINES = ("local", "ray")


def get_engine(engine: Any, progress: bool = True, cache_dir: Any = None,
               options: dict[str, Any] | None = None) -> Any:
    """The engine for ``engine``: ``None`` for ``"local"`` (`encode_modality`'s own thread
    pool), a `RayEngine` for ``"ray"`` with ``options`` (``address``, ``actors``,
    ``num_cpus_per_actor``; Ray checked to import now, before any work), or ``engine`` itself
    when it is already a callable engine."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if engine is None or engine == "local":
        if options:
            raise UsageError(f"--{next(iter(options)).replace('_', '-')} is an option of "
                             "--engine ray")
        return None
    if engine == "ray":
        from polymodal.features.engines.ray_engine import RayEngine

        return RayEngine(progress=progress, cache_dir=cache_dir, **options)
    if callable(engine):
        return engine
    raise UsageError(f"--engine {engine}: unknown engine (choose from {', '.join(ENGINES)})")
