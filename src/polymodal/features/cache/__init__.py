"""Content-addressed feature cache, verified on read, with atomic writes."""
from polymodal.core.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from polymodal.features.cache.store import FeatureStore, FileHasher, default_cache_dir, text_digest

__all__ = ["FeatureStore", "FileHasher", "atomic_path", "atomic_write_bytes",
           "atomic_write_text", "default_cache_dir", "text_digest"]
