"""ONNX Runtime backends of ``minilm``: fp32 export and int8 dynamic quantization.

The exported graph takes ``input_ids`` / ``attention_mask`` (int64 ``[B, L]``, both axes
dynamic, so the length-sorted token batches of `encode_token_ids` run unchanged) and returns the
mean-pooled ``[B, 384]`` states (not yet normalised). Exported with the TorchScript exporter,
opset 17, eager attention.

int8: `onnxruntime.quantization.quantize_dynamic` on the MatMul weights only, int8 per output
channel (uint8 weights on x86 CPUs without VNNI / AMX, whose u8s8 kernels saturate:
`runtimes.int8_unsigned_weights`), ``reduce_range`` off, activations quantized per
batch at run time (so a text's vector depends slightly on its batch-mates). Measured on 2000
OpenClipart captions (docs/RESULTS.md): ~2.2x the fp32 session, but cosine to torch fp32 down to
~0.97 (mean 0.993), below the 0.99 gate, so it is never the default. Quantizing only some
layers or kinds of MatMul was measured too: none kept the minimum >= 0.99.

OpenVINO int8 (`quantize_openvino_int8`, extra ``openvino`` + ``nncf``): NNCF static
post-training quantization of the exported graph (transformer preset, SmoothQuant alpha 0.95,
ranges from the bundled OpenClipart sample's captions), int8 weights per channel and activations
per tensor with fixed ranges -- so a text's vector does not depend on its batch-mates -- except
`OV_INT8_KEPT`: the FFN down-projections (inputs with GELU outliers) and the two
activation-by-activation attention products stay in bf16 (f32 without bf16 units). Measured on
1000 OpenClipart captions: cosine to fp32 min 0.9967, mean 0.9992; ~1.6x openvino bf16 (see
docs/RESULTS.md); quantizing every MatMul reaches only min 0.982.

Files go under ``artifact_dir(cache_dir)``, named by a digest of the weights and the recipe,
written atomically (a killed export leaves nothing) and loaded on the next run.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from polymodal.core.atomic import atomic_path
from polymodal.features.encoders.runtimes import (export_onnx, int8_unsigned_weights, need_onnx,
                                                openvino_model, ort_session)

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


def quantize_int8(fp32_path: Path, path: Path, unsigned_weights: bool = False) -> Path:
    """Dynamic int8 copy of ``fp32_path`` at ``path`` (kept if it exists); ``unsigned_weights``:
    uint8 weights (u8u8, `runtimes.int8_unsigned_weights`)."""
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
                             weight_type=QuantType.QUInt8 if unsigned_weights else
                             QuantType.QInt8)
    finally:
        root.setLevel(level)
    return path


# node-name patterns of the export kept out of int8 (`quantize_openvino_int8`)
OV_INT8_KEPT = (r".*/output/dense/MatMul$", r".*/attention/self/MatMul(_1)?$")
OV_INT8_RECIPE = "ov-int8-sq0.95-keep-ffn-out-attn-1"  # bump when the recipe changes
OV_INT8_CALIBRATION = 300  # sentences


def need_nncf() -> None:
    """A one-line error unless nncf imports (OpenVINO int8 is made with it)."""
    from polymodal.core.lazy import need

    need("nncf", message="openvino int8 needs the package nncf (pip install 'polymodal[openvino]')")


def quantize_openvino_int8(fp32_path: Path, path: Path, calibration: Sequence[Sequence[int]]
                           ) -> Path:
    """Static int8 OpenVINO IR (``path`` .xml + .bin) of ``fp32_path``, calibrated on the token
    ids ``calibration`` (one sentence per sample); kept if it exists. The .bin is moved in place
    before the .xml, so a present .xml means a complete pair."""
    if path.is_file():
        return path
    need_nncf()
    import logging
    import os
    import tempfile

    import nncf
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.ERROR)
    data = nncf.Dataset([{"input_ids": np.asarray([x], dtype=np.int64),
                          "attention_mask": np.ones((1, len(x)), dtype=np.int64)}
                         for x in calibration])
    model = nncf.quantize(
        ov.Core().read_model(str(fp32_path)), data, model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED, subset_size=len(calibration),
        ignored_scope=nncf.IgnoredScope(patterns=list(OV_INT8_KEPT)),
        advanced_parameters=nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=0.95)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ov-int8-", dir=path.parent) as d:
        tmp = Path(d) / path.name
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp, path)
    return path


def calibration_token_ids(tokenizer, n: int = OV_INT8_CALIBRATION) -> list[list[int]]:
    """Token ids (`wordpiece.token_ids`: the tokenizer's own truncation) of up to ``n``
    distinct sentences from the bundled OpenClipart sample's captions (spread over it)."""
    from polymodal.data.datasets import sample_path
    from polymodal.data.manifest import read_manifest
    from polymodal.features.encoders.wordpiece import token_ids

    recs = read_manifest(sample_path("openclipart")).records
    # each caption alone and all of a drawing's captions joined: short and long sentences
    texts = list(dict.fromkeys(" ".join(t.split()) for r in recs
                               for t in (*r.text, ". ".join(r.text)) if t.strip()))
    texts = texts[::max(1, len(texts) // n)]
    return token_ids(tokenizer, texts[:n])


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
    u8 = int8_unsigned_weights()
    path = (quantize_int8(fp32, folder / f"{stem}{'-u8u8' if u8 else ''}-int8.onnx", u8)
            if precision == "int8" else fp32)
    return OnnxTextRunner(path, threads)


class OpenVinoTextRunner:
    """The exported graph compiled by OpenVINO for the CPU, one inference stream per thread.

    ``run_all`` keeps every stream busy (`AsyncInferQueue`): on 2 cores, two 1-thread streams
    encoded 2,000 captions ~10 % faster than one 2-thread request (docs/RESULTS.md §1), since
    short batches leave a second thread of one request idle for much of each call."""

    def __init__(self, path: Path, precision: str, threads: int):
        import openvino as ov

        self.streams = max(1, threads)
        self.model = openvino_model(path, precision, threads, streams=self.streams)
        self.request = self.model.create_infer_request()
        self._queue = ov.AsyncInferQueue(self.model, self.streams) if self.streams > 1 else None

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        res = self.request.infer({"input_ids": input_ids, "attention_mask": mask})
        return np.array(next(iter(res.values())), dtype=np.float32)

    def run_all(self, batches: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """``[(input_ids, mask), ...]`` -> pooled vectors of each, in order."""
        if self._queue is None or len(batches) < 2:
            return [self(ids, mask) for ids, mask in batches]
        out: list[np.ndarray | None] = [None] * len(batches)

        def done(request: Any, k: int) -> None:
            out[k] = np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy

        self._queue.set_callback(done)
        for k, (ids, mask) in enumerate(batches):
            self._queue.start_async({"input_ids": ids, "attention_mask": mask}, k)
        self._queue.wait_all()
        return out  # type: ignore[return-value]


def openvino_runner(model_dir: Path, precision: str, folder: Path, threads: int,
                    calibration: Callable[[], Sequence[Sequence[int]]] | None = None
                    ) -> OpenVinoTextRunner:
    """OpenVINO on the exported fp32 ONNX file (exported first if needed); int8: on its
    quantized IR, made first from ``calibration()`` token ids if needed."""
    fp32 = export_fp32(model_dir, folder / f"minilm-{weights_digest(model_dir)}-fp32.onnx")
    if precision != "int8":
        return OpenVinoTextRunner(fp32, precision, threads)
    need_nncf()
    ids = calibration() if calibration is not None else []
    if not ids:
        raise ValueError("openvino int8 needs calibration sentences")
    h = hashlib.sha256(f"{OV_INT8_RECIPE}|{weights_digest(model_dir)}|{ids!r}".encode())
    path = quantize_openvino_int8(fp32, folder / f"minilm-{h.hexdigest()[:16]}-ov-int8.xml", ids)
    return OpenVinoTextRunner(path, precision, threads)
