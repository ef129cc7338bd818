"""The non-torch inference runtimes the encoders share: onnxruntime sessions and OpenVINO
compiled models over an exported ONNX file, each with its one-line errors (missing package,
damaged file)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from polymodal.core.errors import PolymodalError
from polymodal.core.lazy import need


def need_onnx() -> None:
    """A one-line error unless onnx and onnxruntime import."""
    need("onnx", "onnxruntime", message="backend 'onnx' needs the packages onnx and onnxruntime "
                                        "(pip install 'polymodal[fast]')")


def int8_unsigned_weights() -> bool:
    """Whether onnxruntime int8 models made here should store uint8 weights (u8u8) instead of
    int8 (u8s8): True on an x86 CPU without VNNI / AMX-INT8. ONNX Runtime's u8s8 kernels there
    multiply with ``vpmaddubsw``, whose 16-bit sums saturate. Measured on an AVX2 EPYC with
    EfficientNet-Lite0, cosine to fp32 over 12 sample images (min / mean): u8s8 0.74 / 0.84,
    u8s8 with 7-bit weights 0.85 / 0.94, u8u8 0.98 / 0.99. VNNI and AMX accumulate in 32 bits,
    so u8s8 is right there; other architectures use other kernels."""
    import platform

    from polymodal.features.encoders.backends import cpu_flags

    if platform.machine().lower() not in ("x86_64", "amd64", "x86", "i386", "i686"):
        return False
    flags = cpu_flags()
    if flags is None:  # not Linux: the choice that is accurate on every x86 CPU
        return True
    return not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def ort_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session on ``path`` (all graph optimisations, ``threads`` intra-op)."""
    need_onnx()
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - a damaged artifact is a one-line error
        raise PolymodalError(f"cannot load {path}: {str(e).splitlines()[0]} (delete it to "
                             "export again)") from None


def openvino_model(path: Path, precision: str, threads: int, streams: int = 1) -> Any:
    """``path`` compiled by OpenVINO for the CPU; ``precision`` bf16 sets its inference
    precision hint (the AMX / AVX512-BF16 units), fp32 keeps every op in f32; int8 (a quantized
    graph) runs its int8 ops on VNNI / AMX and the rest in bf16 where the CPU has bf16 units.
    ``streams`` > 1: that many inference streams sharing the ``threads`` (OpenVINO's
    throughput mode), for callers that keep several requests in flight (`AsyncInferQueue`)."""
    try:
        import openvino as ov
    except ImportError:
        raise PolymodalError("backend 'openvino' needs the package openvino "
                             "(pip install 'polymodal[openvino]')") from None
    from polymodal.features.encoders.backends import cpu_has_bf16

    hint = {"fp32": "f32", "bf16": "bf16", "int8": "bf16" if cpu_has_bf16() else "f32"}[precision]
    try:
        mode = ({"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams} if streams > 1
                else {"PERFORMANCE_HINT": "LATENCY"})
        return ov.Core().compile_model(str(path), "CPU", {
            "INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": max(1, threads), **mode})
    except Exception as e:  # noqa: BLE001
        raise PolymodalError(f"cannot load {path}: {str(e).splitlines()[0]} (delete it to "
                             "export again)") from None


OPSET = 17


def export_onnx(module: Any, args: tuple, path: Path, inputs: list[str], outputs: list[str],
                dynamic_axes: dict) -> Path:
    """``module`` (eval mode) exported to ``path`` with the TorchScript exporter (opset
    `OPSET`), atomically; an existing file is kept (artifacts are named by their recipe)."""
    if path.is_file():
        return path
    need_onnx()
    import warnings

    import torch

    from polymodal.core.atomic import atomic_path

    with atomic_path(path) as tmp, torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on constant folding
        torch.onnx.export(module, args, str(tmp), input_names=inputs, output_names=outputs,
                          opset_version=OPSET, dynamo=False, dynamic_axes=dynamic_axes)
    return path
