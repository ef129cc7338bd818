"""Training-loop settings: a torch-free pydantic model shared by every task config."""
from __future__ import annotations

from pydantic import BaseModel, Field


class TrainConfig(BaseModel):
    """Loop settings (the same schema in YAML, CLI and Python)."""

    epochs: int = Field(30, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(5, ge=1, description="epochs without validation gain before stopping")
    seed: int = 0
    grad_clip: float | None = 5.0
    betas: tuple[float, float] | None = Field(
        None, description="Adam(W) betas; None: the task's default ((0.9, 0.999) unless the "
                          "task says otherwise, e.g. (0.5, 0.999) for GANs)")
    progress: bool = True
    tensorboard: bool = Field(False, description="also log to RUN/tensorboard/ (needs the "
                                                 "'tensorboard' package: pip install "
                                                 "'polymodal[tensorboard]')")
