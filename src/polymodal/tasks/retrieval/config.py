"""The retrieval task's configuration: torch-free, the one schema for YAML, CLI and Python."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from polymodal.train.config import TrainConfig


Modality = Literal["text", "image", "audio"]


class RetrievalConfig(BaseModel):
    """Everything ``fit retrieval`` needs; the same schema in YAML, CLI and Python."""

    manifest: str
    query: Modality = "text"
    target: Modality = "image"
    loss: str = Field("infonce", description="an alignment method: `polymodal list losses`")
    head: Literal["linear", "mlp"] = "mlp"
    dim: int = Field(256, ge=2)
    hidden: int = 1024
    dropout: float = 0.1
    batch_size: int = Field(256, ge=2)
    margin: float = 0.2
    relevance: str = Field("row", description="'row' or a column whose equal values all count "
                                              "as correct (label, caption_group)")
    encoders: dict[str, str] = {}
    columns: dict[str, str] = {}
    index: str = "auto"
    cache_dir: str | None = None
    features: str | None = Field(None, description="folder written by `polymodal encode --out` "
                                 "for this manifest: use its vectors instead of encoding")
    train: TrainConfig = TrainConfig()
