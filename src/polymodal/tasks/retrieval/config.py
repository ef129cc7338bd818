"""The retrieval task's configuration: torch-free, the one schema for YAML, CLI and Python."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from polymodal.core.config import StrictConfig, in_registry
from polymodal.features.encoders.registry import check_encoder_map
from polymodal.nn.registry import HEADS
from polymodal.objectives.registry import ALIGNMENTS
from polymodal.train.config import TrainConfig


Modality = Literal["text", "image", "audio"]


class RetrievalConfig(StrictConfig):
    """Everything ``fit retrieval`` needs; the same schema in YAML, CLI and Python."""

    manifest: str = Field(description="CSV / JSONL / Parquet manifest")
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
    encoders: Annotated[dict[str, str], AfterValidator(check_encoder_map)] = Field(
        {}, description="encoder per modality, e.g. image=efficientnet-lite0, "
                        "text=hf:<model> (`polymodal list encoders`)")
    columns: dict[str, str] = Field({}, description="manifest column per role, e.g. "
                                     "text=caption")
    index: str = Field("auto", description="auto, exact, hnsw or ivfpq")
    cache_dir: str | None = Field(None, description="feature cache folder (default "
                                  "$POLYMODAL_CACHE or ~/.cache/polymodal)")
    features: str | None = Field(None, description="folder written by `polymodal encode --out` "
                                 "for this manifest: use its vectors instead of encoding")
    train: TrainConfig = TrainConfig()
