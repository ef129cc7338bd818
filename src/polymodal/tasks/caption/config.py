"""The caption task's configuration: torch-free, the one schema for YAML, CLI and Python."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from polymodal.train.config import TrainConfig


class CaptionConfig(BaseModel):
    """Everything ``fit caption`` needs; the same schema in YAML, CLI and Python."""

    manifest: str
    features: str | None = Field(None, description="an already encoded folder (skip encoding)")
    encoders: dict[str, str] = {}
    columns: dict[str, str] = {}
    cache_dir: str | None = None
    decoder: Literal["gru", "transformer"] = "gru"
    embed_dim: int = Field(256, ge=8)
    hidden: int = Field(512, ge=8, description="GRU state size")
    layers: int = Field(2, ge=1, description="Transformer layers")
    heads: int = Field(4, ge=1)
    prefix: int = Field(4, ge=1, description="Transformer: image prefix tokens")
    dropout: float = Field(0.2, ge=0, lt=1)
    vocab_size: int = Field(5000, ge=10)
    min_count: int = Field(2, ge=1, description="words seen fewer times become <unk>")
    max_len: int = Field(16, ge=2, description="words per caption (longer ones are cut)")
    beam: int = Field(3, ge=1)
    length_penalty: float = Field(0.0, ge=0)
    batch_size: int = Field(128, ge=2)
    nn_space: str | None = Field(None, description="retrieval run folder for the baseline")
    threads: int = Field(1, ge=1, description="torch CPU threads (small models: 1 is fastest)")
    train: TrainConfig = TrainConfig(epochs=20, lr=1e-3, patience=4)



# ---------------------------------------------------------------- vocabulary
