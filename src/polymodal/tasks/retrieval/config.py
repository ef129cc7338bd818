"""The retrieval task's configuration: torch-free, the one schema for YAML, CLI and Python."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from polymodal.core.config import in_registry
from polymodal.nn.registry import HEADS
from polymodal.objectives.registry import ALIGNMENTS
from polymodal.tasks.common import DataConfig
from polymodal.train.config import TrainConfig


Modality = Literal["text", "image", "audio", "video"]
AUTO = "auto"


def _loss_or_auto(value: str) -> str:
    """A registered alignment method or 'auto' (model selection, `tasks.retrieval.select`)."""
    if value != AUTO:
        ALIGNMENTS.get(value)
    return value


class RetrievalConfig(DataConfig):
    """Everything ``fit retrieval`` needs; the same schema in YAML, CLI and Python."""

    query: Modality = Field("text", description="the modality searched with")
    target: Modality = Field("image", description="the modality searched for (indexed)")
    loss: Annotated[str, AfterValidator(_loss_or_auto)] = Field(
        "auto", description="an alignment method (`polymodal list losses`), or 'auto': try "
                            "the candidates cheap first within select_budget_s and keep the "
                            "best on the validation split")
    select_budget_s: float = Field(300.0, gt=0, description="--loss auto: seconds of "
                                   "candidate training; a candidate not started within them "
                                   "is reported as skipped")
    pivot: Modality | None = Field(None, description="emergent binding: the modality every "
                                   "other one is aligned to (with --pairs)")
    pairs: str | None = Field(None, description="emergent binding: the pairs trained on, each "
                              "X-PIVOT, comma-separated (e.g. audio-image,text-image); "
                              "query and target need never be seen together")
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
    index: str = Field("auto", description="auto, exact, hnsw, ivfpq (FAISS, in memory) or "
                                           "lancedb (on disk, IVF-PQ; extra [lancedb])")
    frame_pairs: str | None = Field(None, description="text <-> video: a column of per-clip "
                                    "timing (a list of {word, image_start_s, image_end_s}, as "
                                    "av-digits-video writes); also trains on (word, frame "
                                    "shown then) pairs of the training clips")
    video_pool: Literal["mean", "attention"] = Field(
        "mean", description="a video side's clip vector: the mean of its frame vectors, or "
        "attention: a learned attention pooling over them, trained with the heads (needs "
        "frames:<image encoder> features and a contrastive --loss)")
    bridge: Literal["none", "asr"] = Field(
        "none", description="asr: speech as a bridge — the audio side is its Whisper transcript "
        "in the text encoder's space (encoder asr:<text encoder>); audio <-> text matches with "
        "no training (zero-shot), audio <-> image through heads trained on text <-> image")
    train: TrainConfig = TrainConfig()
