"""The classification task's configuration: torch-free, the one schema for YAML, CLI and Python."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from polymodal.train.config import TrainConfig


class ClassifierConfig(BaseModel):
    """Everything ``fit classify`` needs; the same schema in YAML, CLI and Python."""

    manifest: str
    target: str = Field("label", description="'label' (the label role) or an extra column")
    task: Literal["auto", "classification", "multilabel", "regression"] = "auto"
    modalities: list[str] | None = Field(None, description="default: all in the manifest")
    fusion: str = Field("early", description="a fusion (`polymodal list fusions`) or unimodal:<modality>")
    fusion_options: dict[str, Any] = {}
    hidden: int = Field(128, ge=1, description="fusion output width (input of the head)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the output layer")
    modality_dropout: float = Field(0.0, ge=0, le=1)
    encoders: dict[str, str] = {}
    columns: dict[str, str] = {}
    features: str | None = Field(None, description="an already encoded folder (skip encoding)")
    cache_dir: str | None = None
    batch_size: int = Field(256, ge=1)
    threads: int = Field(1, ge=1, description="torch CPU threads while training; small "
                                               "models train fastest on one")
    train: TrainConfig = TrainConfig()
