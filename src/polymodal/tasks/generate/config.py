"""The generation task's configuration: torch-free, the one schema for YAML, CLI and Python."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from polymodal.core.config import in_registry
from polymodal.nn.registry import GENERATORS
from polymodal.tasks.common import DataConfig
from polymodal.train.config import TrainConfig


class GenerateConfig(DataConfig):
    """Everything ``fit generate`` needs; the same schema in YAML, CLI and Python."""

    model: Annotated[str, in_registry(GENERATORS)] = Field(
        "cvae", description="image generator: `polymodal list generators`")
    condition: Literal["text", "audio"] = Field("text", description="modality conditioned on")
    size: int = Field(28, ge=8, le=128, description="image side in pixels (28 digits, 64 "
                                                        "drawings)")
    channels: Literal[0, 1, 3] = Field(0, description="1 grey, 3 RGB, 0 auto (1 for size<=32)")
    latent_dim: int = Field(16, ge=1, description="noise / latent width")
    width: int = Field(32, ge=4, description="base convolution channels")
    beta: float = Field(1.0, ge=0, description="cVAE KL weight")
    batch_size: int = Field(64, ge=2, description="images per training batch")
    limit: int | None = Field(None, ge=1, description="at most this many train rows")
    metrics: Literal["auto", "digits", "labels", "efficientnet", "none"] = Field(
        "auto", description="how generated images are scored (auto: digits for labels 0-9 "
                            "on one channel; labels for any other labelled set: linear probe "
                            "on EfficientNet-Lite0 features; else efficientnet FID)")
    classifier: str | None = Field(None, description="saved DigitCNN (RUN/digit_classifier."
                                   "safetensors of another run) to score with, instead of "
                                   "training one")
    n_eval: int = Field(1000, ge=10, description="generated images scored")
    threads: int = Field(1, ge=1, description="torch CPU threads (small models: 1 is fastest)")
    train: TrainConfig = TrainConfig(epochs=15, lr=2e-3, patience=15)
