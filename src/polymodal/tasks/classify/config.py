"""The classification task's configuration: torch-free, the one schema for YAML, CLI and Python."""
from __future__ import annotations

from typing import Any, Literal, Sequence

from pydantic import Field, ValidationInfo, field_validator

from polymodal.core.errors import UsageError
from polymodal.features.encoders.registry import MODALITIES
from polymodal.nn.registry import FUSIONS
from polymodal.tasks.common import DataConfig
from polymodal.train.config import TrainConfig


def check_fusion(name: str, modalities: Sequence[str] = MODALITIES) -> str:
    """``name`` if it is a fusion (`polymodal list fusions`) or ``unimodal:<m>`` for one of
    ``modalities``; a one-line `UsageError` (with a did-you-mean) otherwise."""
    mods = sorted(modalities)
    scheme, sep, modality = name.partition(":")
    if sep and scheme == "unimodal":
        if modality not in mods:
            raise UsageError(f"unimodal baseline '{name}': modality '{modality}' is not among "
                             f"the modalities used ({', '.join(mods)})")
    elif name not in FUSIONS:
        raise FUSIONS.error(name, extra=[f"unimodal:{m}" for m in mods])
    return name


class ClassifierConfig(DataConfig):
    """Everything ``fit classify`` needs; the same schema in YAML, CLI and Python."""

    target: str = Field("label", description="'label' (the label role) or an extra column")
    task: Literal["auto", "classification", "multilabel", "regression"] = Field(
        "auto", description="auto: from the target column's values")
    modalities: list[str] | None = Field(None, description="modalities to use, e.g. "
                                         "image,audio (default: all in the manifest)")
    fusion: str = Field("weighted", description="a fusion (`polymodal list fusions`) or "
                                                "unimodal:<modality>; weighted by default "
                                                "(best or within 0.5 pt of the best on "
                                                "docs/RESULTS.md §3 and §10)")
    fusion_options: dict[str, Any] = Field({}, description="fusion constructor options, "
                                            "e.g. attn_dim=32 (`polymodal list fusions "
                                            "--options`)")
    hidden: int = Field(128, ge=1, description="fusion output width (input of the head)")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the output layer")
    modality_dropout: float = Field(0.0, ge=0, le=1, description="probability of hiding "
                                    "each present modality while training (e.g. 0.3)")
    unimodal_heads: bool = Field(True, description="no-regret fusion: fusions also train "
                                 "one unimodal head per modality (own loss) and, per pattern "
                                 "of present modalities, use the fused output, the ensemble or "
                                 "a present modality's head, whichever scored best on val")
    head_distill: float = Field(0.5, ge=0, le=1, description="unimodal heads: weight of the "
                                "fused output (soft target) against the labels in their loss")
    batch_size: int = Field(256, ge=1, description="rows per training batch")
    batch_by: str | None = Field(None, description="manifest column: rows sharing its value "
                                 "train in the same batch (e.g. image_id: the film / relation "
                                 "fusions then run their CNN stem once per image)")
    group_by: list[str] = Field([], description="manifest columns: also report the test "
                                "metrics per value of each (e.g. question_type,template)")
    threads: int = Field(1, ge=1, description="torch CPU threads while training; small "
                                               "models train fastest on one")
    train: TrainConfig = TrainConfig()

    @field_validator("fusion")
    @classmethod
    def _known_fusion(cls, v: str, info: ValidationInfo) -> str:
        return check_fusion(v, info.data.get("modalities") or MODALITIES)
