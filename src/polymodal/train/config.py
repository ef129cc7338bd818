"""Training-loop settings: a torch-free pydantic model shared by every task config."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from polymodal.core.config import StrictConfig


class TrainConfig(StrictConfig):
    """Loop settings (the same schema in YAML, CLI and Python)."""

    epochs: int = Field(30, ge=1, description="most epochs to train")
    lr: float = Field(1e-3, gt=0, description="learning rate (AdamW)")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    patience: int = Field(5, ge=1, description="epochs without validation gain before stopping")
    seed: int = Field(0, description="random seed (initialisation, batch order, dropout); splits never depend on it")
    grad_clip: float | None = Field(5.0, description="clip the gradient norm to this "
                                                       "(0 or null: no clipping)")
    betas: tuple[float, float] | None = Field(
        None, description="Adam(W) betas; None: the task's default ((0.9, 0.999) unless the "
                          "task says otherwise, e.g. (0.5, 0.999) for GANs)")
    lr_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="learning rate over the epochs: cosine decay from lr to 0, or "
                              "constant lr")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="compute of the training steps: fp32, or bf16 autocast (the CPU's "
                            "AMX / AVX-512 bf16 units) with fp32 master weights and optimizer")
    compile: bool = Field(
        False, description="compile the training step with torch.compile: in one process "
                           "the whole step (forward, backward, clipping, AdamW) as one graph, "
                           "else the loss; a one-off compile of a few seconds, then faster "
                           "steps (docs/RESULTS.md §1)")
    fused_adamw: bool = Field(
        True, description="torch's fused AdamW kernel (one kernel for all parameters; faster "
                          "on this CPU in fp32 and bf16, docs/RESULTS.md §1)")
    keep: Literal["best", "last"] = Field(
        "best", description="weights to end with: the epoch with the best validation score, "
                            "or the last epoch run")
    progress: bool = Field(True, description="show progress bars (-q turns them off)")
    tensorboard: bool = Field(False, description="also log to RUN/tensorboard/ (needs the "
                                                 "'tensorboard' package: pip install "
                                                 "'polymodal[tensorboard]')")
