"""The caption task's configuration: torch-free, the one schema for YAML, CLI and Python."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from polymodal.core.config import in_registry
from polymodal.nn.registry import CAPTION_DECODERS
from polymodal.tasks.common import DataConfig
from polymodal.train.config import TrainConfig


class CaptionConfig(DataConfig):
    """Everything ``fit caption`` needs; the same schema in YAML, CLI and Python."""

    decoder: Annotated[str, in_registry(CAPTION_DECODERS)] = Field(
        "gru", description="caption decoder: `polymodal list decoders`")
    embed_dim: int = Field(256, ge=8, description="word embedding width")
    hidden: int = Field(512, ge=8, description="GRU state size")
    layers: int = Field(2, ge=1, description="Transformer layers")
    heads: int = Field(4, ge=1, description="Transformer attention heads")
    prefix: int = Field(4, ge=1, description="Transformer: image prefix tokens")
    dropout: float = Field(0.2, ge=0, lt=1, description="decoder dropout")
    vocab_size: int = Field(5000, ge=10, description="most words kept (most frequent first)")
    min_count: int = Field(2, ge=1, description="words seen fewer times become <unk>")
    max_len: int = Field(16, ge=2, description="words per caption (longer ones are cut)")
    beam: int = Field(3, ge=1, description="beam width when captioning (1: greedy)")
    length_penalty: float = Field(0.0, ge=0, description="beam search ranks by "
                                                         "log-prob / length ** this")
    batch_size: int = Field(128, ge=2, description="image-caption pairs per training "
                                                   "batch")
    nn_space: str | None = Field(None, description="retrieval run folder: nearest-neighbour "
                                 "baseline in its shared space (default: cosine on the image "
                                 "features)")
    neighbours: int = Field(4, ge=1, description="rag: captions of this many nearest training "
                            "images the decoder reads")
    copy_words: bool = Field(True, description="rag: pointer-generator head that can copy "
                             "neighbour words (also words outside the vocabulary)")
    no_repeat_ngram: int = Field(3, ge=0, description="rag: no n-gram of this length twice in "
                                 "a caption (0: off)")
    rerank: bool = Field(False, description="rag: consensus re-ranking of the beam candidates "
                         "against the neighbour captions (Devlin et al. 2015); off by default: "
                         "its weights, picked on val CIDEr-D, cost BLEU-4 (docs/RESULTS.md §10)")
    rerank_weight: float | None = Field(None, ge=0, description="rag: re-ranking score = "
                                        "consensus CIDEr-D + this * log-prob per word "
                                        "(default: picked on val)")
    rerank_temperature: float | None = Field(None, gt=0, description="rag: neighbour j "
                                             "counts softmax(cosine_j / this) in the consensus "
                                             "(large: equally; default: picked on val)")
    threads: int = Field(1, ge=1, description="torch CPU threads (small models: 1 is fastest)")
    train: TrainConfig = TrainConfig(epochs=20, lr=1e-3, patience=4)
