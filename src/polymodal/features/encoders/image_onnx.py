"""ONNX Runtime backends of ``efficientnet-lite0``: fp32 export and int8 static quantization.

The exported graph takes the normalised ``float32 [B, 3, H, W]`` input (batch, height and width
dynamic: the network is fully convolutional, so one file serves every resolution that is a
multiple of 32) and returns the pooled ``[B, 1280]`` features.

int8: onnxruntime static post-training quantization, QDQ format, weights int8 per output
channel, activations uint8 per tensor (u8s8: the VNNI / AMX integer kernels; on x86 CPUs
without them the weights are uint8 too, u8u8: `runtimes.int8_unsigned_weights`), ranges from
MinMax calibration on a fixed list of images (deterministic: the same images give the same
file). Files go under ``artifact_dir(cache_dir)``, named by a digest of what made them (weights,
export settings, calibration images), written atomically and loaded on the next run.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from polymodal.core.atomic import atomic_path
from polymodal.features.encoders.runtimes import export_onnx, need_onnx, openvino_model, ort_session

EXPORT_VERSION = "1"  # bump when the export or quantization recipe changes


def file_digest(paths: Iterable[str | Path], extra: str = "") -> str:
    """sha256 (16 hex) over ``extra`` and the bytes of ``paths`` in order."""
    h = hashlib.sha256(extra.encode())
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:16]


def export_fp32(model, path: Path) -> Path:
    """Export ``model`` (an EfficientNet with ``extract_features``) + average pool to ``path``
    (atomically; kept if it exists)."""
    if path.is_file():
        return path
    need_onnx()
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x).mean(dim=(2, 3))

    return export_onnx(Pooled(model).eval().float(), (torch.zeros(1, 3, 224, 224),), path,
                       ["pixels"], ["features"], {"pixels": {0: "batch", 2: "height", 3: "width"},
                                                  "features": {0: "batch"}})


FP32_BLOCKS = 1  # MBConv blocks that stay in fp32 with the stem in the bf16 recipe


def export_bf16_parts(model, stem_path: Path, rest_path: Path) -> tuple[Path, Path]:
    """The bf16 recipe's two graphs: the stem and the first `FP32_BLOCKS` blocks (run in fp32)
    and the rest + average pool (run in bf16); each exported atomically, kept if it exists.

    The whole network in bf16 fails the cosine gate on drawings (400 OpenClipart drawings:
    min 0.987 to fp32, and bf16-rounded weights alone, computed in fp32, give 0.988): the error
    comes from the stem and first block (the rest in bf16: min 0.9989). Those two layers run at
    112 px and are a small part of the work (docs/RESULTS.md §1)."""
    need_onnx()
    import torch

    class Stem(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            x = self.net._swish(self.net._bn0(self.net._conv_stem(x)))
            for block in self.net._blocks[:FP32_BLOCKS]:
                x = block(x)
            return x

    class Rest(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            for block in self.net._blocks[FP32_BLOCKS:]:
                x = block(x)
            return self.net._swish(self.net._bn1(self.net._conv_head(x))).mean(dim=(2, 3))

    stem, rest = Stem(model).eval().float(), Rest(model).eval().float()
    pixels = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        mid = stem(pixels)
    spatial = {0: "batch", 2: "height", 3: "width"}
    a = export_onnx(stem, (pixels,), stem_path, ["pixels"], ["stem"],
                    {"pixels": spatial, "stem": spatial})
    b = export_onnx(rest, (mid,), rest_path, ["stem"], ["features"],
                    {"stem": spatial, "features": {0: "batch"}})
    return a, b


def quantize_int8(fp32_path: Path, path: Path, calibration: Callable[[], Iterable[np.ndarray]],
                  unsigned_weights: bool = False) -> Path:
    """Static int8 QDQ copy of ``fp32_path`` at ``path`` (kept if it exists); ``calibration()``
    yields model inputs ``float32 [1, 3, H, W]``; ``unsigned_weights``: uint8 weights (u8u8,
    `runtimes.int8_unsigned_weights`)."""
    if path.is_file():
        return path
    need_onnx()
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calibration())

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"pixels": x}

    with tempfile.TemporaryDirectory(prefix="polymodal-quant-") as d:
        pre = Path(d) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        with atomic_path(path) as tmp:
            quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QUInt8 if unsigned_weights else
                            QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"CalibTensorRangeSymmetric": False})
    return path


class OnnxRunner:
    """``run(x [B, 3, H, W] float32) -> [B, 1280] float32`` on an onnxruntime CPU session."""

    def __init__(self, path: Path, threads: int):
        self.session = ort_session(path, threads)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"pixels": np.ascontiguousarray(x, dtype=np.float32)})[0]


class OpenVinoRunner:
    """Exported graphs on OpenVINO's CPU plugin, run one after another: the fp32 graph (fp32),
    or the bf16 recipe's stem in fp32 then the rest in bf16 (`export_bf16_parts`)."""

    def __init__(self, paths: Sequence[Path], precisions: Sequence[str], threads: int):
        self.models = [openvino_model(p, prec, threads) for p, prec in zip(paths, precisions)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        for model in self.models:
            x = model(x)[0]
        return np.asarray(x)


def calibration_inputs(paths: Sequence[str | Path], prepare: Callable, to_array: Callable
                       ) -> Callable[[], Iterable[np.ndarray]]:
    """A re-iterable source of calibration inputs: each image decoded by ``prepare`` and turned
    into a model input by ``to_array`` (one image per input, at its own resolution)."""
    def gen():
        for p in paths:
            yield to_array([prepare(p)])
    return gen
