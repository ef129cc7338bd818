"""Neural building blocks by name: fusions, projection heads, caption decoders and image
generators. Torch-free to import (the CLI and the task configs check names with them); a
target module is imported only by ``load`` / ``build``.

Each registry's ``fixed`` parameters are supplied by the task (shapes); the other
constructor parameters are user options (``polymodal list fusions --options``).
"""
from __future__ import annotations

from polymodal.core.registry import Entry, Registry

_F = "polymodal.nn.fusion"
_G = "polymodal.nn.generative"

FUSIONS = Registry("fusion", [
    Entry("early", f"{_F}.early:EarlyFusion", "concatenate the modalities (a learned "
          "vector for a missing one), then an MLP"),
    Entry("weighted", f"{_F}.weighted:WeightedSumFusion", "weighted sum of per-modality "
          "projections (fixed or learned weights, renormalised over present ones)"),
    Entry("late", f"{_F}.late:LateFusion", "one prediction head per modality, outputs "
          "averaged / weighted / stacked"),
    Entry("attention", f"{_F}.attention:AttentionFusion", "attention weights over the "
          "present modalities' projections"),
    Entry("gated", f"{_F}.gated:GatedFusion", "gated multimodal unit (GMU, Arevalo et al. "
          "2017)"),
    Entry("tensor", f"{_F}.tensor:TensorFusion", "outer product of small per-modality "
          "projections (TFN, Zadeh et al. 2017)"),
    Entry("lowrank", f"{_F}.lowrank:LowRankFusion", "low-rank multimodal fusion (LMF, Liu "
          "et al. 2018)"),
    Entry("cross-attention", f"{_F}.cross_attention:CrossAttentionFusion", "transformer "
          "over one token per modality plus a CLS token"),
    Entry("film", f"{_F}.film:FiLMFusion", "FiLM (Perez et al. 2018): a CNN trained on the "
          "image's pixels (--encoder image=pixels) whose maps the other modality scales and "
          "shifts; for visual question answering", {"input": "pixels"}),
    Entry("relation", f"{_F}.relation:RelationFusion", "Relation Network head (Santoro et "
          "al. 2017) on CNN cells of the pixels (--encoder image=pixels), anchored on the "
          "cells the question attends to", {"input": "pixels"}),
], fixed=("dims", "out_dim"))

HEADS = Registry("head", [
    Entry("linear", "polymodal.nn.heads:LinearHead", "y = W x + b"),
    Entry("mlp", "polymodal.nn.heads:MLPHead", "Linear -> GELU -> Dropout -> Linear"),
], fixed=("in_dim", "out_dim"))

CAPTION_DECODERS = Registry("caption decoder", [
    Entry("gru", f"{_G}:GRUCaptioner", "GRU whose initial state is the image feature"),
    Entry("transformer", f"{_G}:TransformerCaptioner", "small pre-norm Transformer over "
          "image prefix tokens + words (prefix-LM)"),
    Entry("rag", "polymodal.nn.rag_captioner:RagCaptioner", "retrieval-augmented Transformer "
          "decoder: cross-attends to the image and its nearest training images' captions, "
          "can copy their words"),
], fixed=("feat_dim", "vocab_size"))

GENERATORS = Registry("generator", [
    Entry("cvae", f"{_G}:CVAE", "convolutional conditional VAE"),
    Entry("gan", f"{_G}:CondGAN", "DCGAN-style conditional GAN with a projection "
          "discriminator"),
], fixed=("channels", "size", "cond_dim"))
