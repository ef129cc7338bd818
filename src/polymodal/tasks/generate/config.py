"""The generation task's configuration: torch-free, the one schema for YAML, CLI and Python."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from polymodal.train.config import TrainConfig


class GenerateConfig(BaseModel):
    """Everything ``fit generate`` needs; the same schema in YAML, CLI and Python."""

    manifest: str
    model: Literal["cvae", "gan"] = "cvae"
    condition: Literal["text", "audio"] = "text"
    encoders: dict[str, str] = {}
    columns: dict[str, str] = {}
    features: str | None = Field(None, description="an already encoded folder (skip encoding)")
    cache_dir: str | None = None
    size: int = Field(28, ge=8, le=128, description="image side in pixels")
    channels: Literal[0, 1, 3] = Field(0, description="1 grey, 3 RGB, 0 auto (1 for size<=32)")
    latent_dim: int = Field(16, ge=1)
    width: int = Field(32, ge=4)
    beta: float = Field(1.0, ge=0, description="cVAE KL weight")
    batch_size: int = Field(64, ge=2)
    limit: int | None = Field(None, ge=1, description="at most this many train rows")
    metrics: Literal["auto", "digits", "efficientnet", "none"] = "auto"
    classifier: str | None = Field(None, description="a saved DigitCNN to reuse for metrics")
    n_eval: int = Field(1000, ge=10, description="generated images scored")
    threads: int = Field(1, ge=1, description="torch CPU threads (small models: 1 is fastest)")
    train: TrainConfig = TrainConfig(epochs=15, lr=2e-3, patience=15)
