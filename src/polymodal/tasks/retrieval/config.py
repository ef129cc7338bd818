"""The retrieval task's configuration: torch-free, the one schema for YAML, CLI and Python."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from polymodal.core.config import in_registry
from polymodal.nn.registry import HEADS
from polymodal.objectives.registry import ALIGNMENTS
from polymodal.tasks.common import DataConfig
from polymodal.train.config import TrainConfig


Modality = Literal["text", "image", "audio"]


class RetrievalConfig(DataConfig):
    """Everything ``fit retrieval`` needs; the same schema in YAML, CLI and Python."""

    query: Modality = Field("text", description="the modality searched with")
    target: Modality = Field("image", description="the modality searched for (indexed)")
    loss: Annotated[str, in_registry(ALIGNMENTS)] = Field(
        "infonce", description="an alignment method: `polymodal list losses`")
    head: Annotated[str, in_registry(HEADS)] = Field(
        "mlp", description="projection head of each side: `polymodal list heads`")
    dim: int = Field(256, ge=2, description="shared-space width")
    hidden: int = Field(1024, description="MLP head hidden width")
    dropout: float = Field(0.1, description="MLP head dropout")
    batch_size: int = Field(256, ge=2, description="pairs per training batch (the in-batch "
                                                   "negatives of the contrastive losses)")
    margin: float = Field(0.2, description="margin of the losses that take one (triplet, "
                                           "contrastive)")
    relevance: str = Field("row", description="'row' or a column whose equal values all count "
                                              "as correct (label, caption_group)")
    index: str = Field("auto", description="auto, exact, hnsw or ivfpq")
    train: TrainConfig = TrainConfig()
