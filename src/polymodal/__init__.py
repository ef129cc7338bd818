"""polymodal: learn from image, text and audio together — offline, on a CPU.

The public API is small and imported lazily (``import polymodal`` loads no torch)::

    import polymodal as pm
    m = pm.read_manifest("data.jsonl")
    feats = pm.encode_manifest(m, "features/").features
    res = pm.fit_retrieval(pm.RetrievalConfig(manifest="data.jsonl"), "runs/r1")
    hits = pm.search_run(pm.load_run("runs/r1"), text="a red car", k=5)
    model = pm.load("runs/r1")                   # the run's task object (`polymodal.tasks.api`)
    hits = model.search(["a red car", "a cat"], k=5)
    vecs = pm.encode(["a cat", "a dog"])         # [2, 384] through the feature cache
"""
from __future__ import annotations

from polymodal.core.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "read_manifest": "polymodal.data.manifest",
    "validate_manifest": "polymodal.data.validate",
    "build_dataset": "polymodal.data.datasets",
    "build_encoder": "polymodal.features.encoders",
    "ENCODERS": "polymodal.features.encoders",
    "encode_manifest": "polymodal.features.encode",
    "FeatureSet": "polymodal.features.cache.features",
    "RetrievalConfig": "polymodal.tasks.retrieval.config",
    "fit_retrieval": "polymodal.tasks.retrieval.fit",
    "load_run": "polymodal.tasks.retrieval.predict",
    "search_run": "polymodal.tasks.retrieval.predict",
    "build_fusion": "polymodal.nn.fusion",
    "build_index": "polymodal.index",
    "load_index": "polymodal.index",
    "TrainConfig": "polymodal.train.config",
    "PolymodalError": "polymodal.core.errors",
    "load": "polymodal.tasks.api",
    "encode": "polymodal.features.encode",
}

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
__all__ = __all__ + ["__version__"]
