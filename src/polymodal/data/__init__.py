"""Manifests, modality loaders and built-in dataset builders."""
from polymodal.data.manifest import MODALITIES, ROLES, Manifest, Record, read_manifest

__all__ = ["MODALITIES", "ROLES", "Manifest", "Record", "read_manifest"]
