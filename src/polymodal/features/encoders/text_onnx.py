"""ONNX Runtime backends of ``minilm``: fp32 export and int8 dynamic quantization.

The exported graph takes ``input_ids`` / ``attention_mask`` (int64 ``[B, L]``, both axes
dynamic, so the length-sorted token batches of `encode_token_ids` run unchanged) and returns the
mean-pooled ``[B, 384]`` states (not yet normalised). Exported with the TorchScript exporter,
opset 17, eager attention.

int8: `onnxruntime.quantization.quantize_dynamic` on the MatMul weights only, int8 per output
channel, ``reduce_range`` off (VNNI / AMX have no overflow problem), activations quantized per
batch at run time (so a text's vector depends slightly on its batch-mates). Measured on 2000
OpenClipart captions (docs/RESULTS.md): ~2.2x the fp32 session, but cosine to torch fp32 down to
~0.97 (mean 0.993), below the 0.99 gate, so it is never the default. Quantizing only some
layers or kinds of MatMul was measured too: none kept the minimum >= 0.99.

Files go under ``artifact_dir(cache_dir)``, named by a digest of the weights and the recipe,
written atomically (a killed export leaves nothing) and loaded on the next run.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from polymodal.core.atomic import atomic_path
from polymodal.features.encoders.runtimes import export_onnx, need_onnx, openvino_model, ort_session

RECIPE = "minilm-onnx-1"  # bump when the export or quantization recipe changes


def weights_digest(model_dir: Path) -> str:
    """sha256 (16 hex) of the recipe and the model's weight and config files."""
    h = hashlib.sha256(RECIPE.encode())
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        p = model_dir / name
        if p.is_file():
            h.update(name.encode())
            with p.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def export_fp32(model_dir: Path, path: Path) -> Path:
    """Export the MiniLM at ``model_dir`` + mean pooling to ``path`` (kept if it exists)."""
    if path.is_file():
        return path
    need_onnx()
    import torch
    from transformers import AutoModel

    from polymodal.features.encoders.text import mean_pool, quiet_transformers

    class Pooled(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask):
            hidden = self.net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return mean_pool(hidden, attention_mask)

    with quiet_transformers():
        net = AutoModel.from_pretrained(model_dir, local_files_only=True,
                                        attn_implementation="eager")
    ids = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "length"}
    return export_onnx(Pooled(net.eval()), (ids, ids.clone()), path,
                       ["input_ids", "attention_mask"], ["pooled"],
                       {"input_ids": axes, "attention_mask": axes, "pooled": {0: "batch"}})


def quantize_int8(fp32_path: Path, path: Path) -> Path:
    """Dynamic int8 copy of ``fp32_path`` at ``path`` (kept if it exists)."""
    if path.is_file():
        return path
    need_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import logging

    root = logging.getLogger()
    level, _ = root.level, root.setLevel(logging.ERROR)  # its "consider pre-processing" note
    try:
        with atomic_path(path) as tmp:
            quantize_dynamic(str(fp32_path), str(tmp), op_types_to_quantize=["MatMul"],
                             per_channel=True, reduce_range=False,
                             weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return path


class OnnxTextRunner:
    """``(input_ids, attention_mask) -> pooled [B, 384]`` float32 on an onnxruntime session."""

    def __init__(self, path: Path, threads: int):
        self.session = ort_session(path, threads)

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]


def onnx_runner(model_dir: Path, precision: str, folder: Path, threads: int) -> OnnxTextRunner:
    """The session for ``precision`` (fp32 / int8), exporting / quantizing it first if needed."""
    stem = f"minilm-{weights_digest(model_dir)}"
    fp32 = export_fp32(model_dir, folder / f"{stem}-fp32.onnx")
    path = quantize_int8(fp32, folder / f"{stem}-int8.onnx") if precision == "int8" else fp32
    return OnnxTextRunner(path, threads)


class OpenVinoTextRunner:
    """The exported fp32 graph compiled by OpenVINO for the CPU (``precision`` fp32 / bf16)."""

    def __init__(self, path: Path, precision: str, threads: int):
        self.request = openvino_model(path, precision, threads).create_infer_request()

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        res = self.request.infer({"input_ids": input_ids, "attention_mask": mask})
        return np.array(next(iter(res.values())), dtype=np.float32)


def openvino_runner(model_dir: Path, precision: str, folder: Path, threads: int
                    ) -> OpenVinoTextRunner:
    """OpenVINO on the exported fp32 ONNX file (exported first if needed)."""
    fp32 = export_fp32(model_dir, folder / f"minilm-{weights_digest(model_dir)}-fp32.onnx")
    return OpenVinoTextRunner(fp32, precision, threads)
