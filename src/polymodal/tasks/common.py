"""What every task config shares: where the data is and how it is encoded (torch-free). One
schema for these fields, inherited by the four task configs."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from polymodal.core.config import StrictConfig
from polymodal.features.encoders.backends import check_setting
from polymodal.features.encoders.registry import check_encoder_map


class DataConfig(StrictConfig):
    """The data fields of a task config (made absolute when a fit starts)."""

    manifest: str = Field(description="CSV / JSONL / Parquet manifest")
    columns: dict[str, str] = Field({}, description="manifest column per role, e.g. "
                                     "text=caption")
    encoders: Annotated[dict[str, str], AfterValidator(check_encoder_map)] = Field(
        {}, description="encoder per modality, overriding only the modalities named, e.g. "
                        "audio=whisper-tiny (`polymodal list encoders`)")
    features: str | None = Field(None, description="a folder written by `polymodal encode "
                                 "--out` for this manifest: use its vectors instead of "
                                 "encoding")
    cache_dir: str | None = Field(None, description="feature cache folder (default "
                                  "$POLYMODAL_CACHE or ~/.cache/polymodal)")
    backend: Annotated[str, AfterValidator(check_setting("backend"))] = Field(
        "auto", description="how the encoders run: auto, torch, torch-bf16, onnx, openvino; "
                            "one for all or per modality, e.g. text=onnx,image=torch (a fitted "
                            "run keeps its encoders' backend)")
    encoder_precision: Annotated[str, AfterValidator(check_setting("precision"))] = Field(
        "auto", description="encoder precision: auto, fp32, bf16, int8; one for all or per "
                            "modality, e.g. text=int8 (--precision is the training's)")
