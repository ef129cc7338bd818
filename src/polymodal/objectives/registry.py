"""Alignment methods by name (the ``loss`` of ``fit retrieval``), torch-free to import.

``kind`` metadata: ``loss`` entries are pure functions of two paired batches
(`polymodal.objectives.losses`), trained by gradient descent on two projection heads
(``regression`` losses map the query onto the fixed target features instead);
``method`` entries have their own fitter (closed-form linear CCA, deep CCA, a multimodal
autoencoder) whose constructor options are listed.
"""
from __future__ import annotations

from polymodal.core.registry import Entry, Registry

_L = "polymodal.objectives.losses"

ALIGNMENTS = Registry("loss", [
    Entry("infonce", f"{_L}:infonce_loss", "symmetric InfoNCE / CLIP softmax over the batch, "
          "learnable temperature", {"kind": "loss", "scalars": "logit_scale"}),
    Entry("siglip", f"{_L}:siglip_loss", "pairwise sigmoid loss (SigLIP), learnable "
          "temperature and bias", {"kind": "loss", "scalars": "logit_scale, logit_bias"}),
    Entry("triplet", f"{_L}:triplet_loss", "bidirectional hinge on the hardest in-batch "
          "negative (VSE++), margin", {"kind": "loss"}),
    Entry("triplet-semihard", f"{_L}:triplet_loss", "triplet loss on semi-hard negatives "
          "(FaceNet), margin", {"kind": "loss"}, preset={"mining": "semihard"}),
    Entry("contrastive", f"{_L}:contrastive_loss", "pairwise contrastive loss with a margin "
          "(Hadsell et al. 2006)", {"kind": "loss"}),
    Entry("mse", f"{_L}:mse_loss", "regress the query onto the target features (squared "
          "error)", {"kind": "regression"}),
    Entry("cosine", f"{_L}:cosine_loss", "regress the query onto the target features' "
          "direction (1 - cosine)", {"kind": "regression"}),
    Entry("cca", "polymodal.objectives.cca:LinearCCA", "linear CCA, closed form (no training "
          "loop)", {"kind": "method", "fit": "closed-form"}),
    Entry("dcca", "polymodal.objectives.cca:DeepCCA", "deep CCA: two MLPs trained for "
          "correlation (Andrew et al. 2013)", {"kind": "method", "fit": "aligner"}),
    # a string target: nn is a sibling layer, imported only when the method is used
    Entry("autoencoder", "polymodal.nn.autoencoder:MultimodalAutoencoder", "multimodal "
          "autoencoder with a shared latent space (reconstruction + alignment)",
          {"kind": "method", "fit": "aligner"}),
], fixed=("a", "b", "pred", "target", "logit_scale", "logit_bias", "x_dim", "y_dim", "dims"))
