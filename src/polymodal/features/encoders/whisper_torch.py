"""Whisper tiny's encoder in torch, with the weights read from the bundled CTranslate2
``model.bin``, and the cheap 30-s window for short clips (`SilenceCachedEncoder`).

A 1-s clip is ~100 of the window's 3000 mel frames; the rest is zero padding. The padded
window costs the full encoder over 1500 positions (~37 GFLOP), for ~50 positions that matter.
The padding positions are the same for every clip at the encoder's input (the zero frames
plus the positional embedding); further up they change only through attention to the clip.
So the keys / values of the padding positions of every layer are computed once, from a silent
window (all-zero mel), and each clip runs only its ``live`` positions (its audio plus
``margin`` padding positions, where the clip's influence on the padding is largest) through
the four layers, attending to its own keys / values and the cached padding ones. Its encoder
output for the decoder is its live states followed by the silent window's states.

Measured (60 FSDD clips, against CTranslate2's exact padded window; benchmarks/encode_audio.py
for 300): margin 2: cosine min 0.950 / mean 0.982; 16: 0.969 / 0.993; 64: 0.993 / 0.998;
200: 0.997 / 0.999; cross-speaker 1-NN digit accuracy 0.950 for all (exact CT2 int8: 0.933).
Default margin 200: at 64 the features were fine (300 clips: cosine min 0.989 / mean 0.998,
1-NN 0.950 vs 0.947; `ratio 7.52x`), but one of 300 transcripts looped (4_george_1:
"forward forward ..." to the token limit, WER 0.583 vs 0.433 in CT2 fp32; exact window and
margin 200: "forward."); at 200 the 300 transcripts have WER 0.413, digit accuracy 0.630
(CT2 fp32 one at a time: 0.433 / 0.617). The exact torch forward
(`TorchWhisperEncoder.forward`) equals CT2 float32 within 2e-3 (states of magnitude ~12).

`read_ct2_model` parses CTranslate2's binary format (``ctranslate2/specs/model_spec.py``
``_serialize``: version, spec name, revision, variables (name, rank, dims, dtype id,
bytes, data), aliases).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from polymodal.core.errors import PolymodalError

_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)  # CT2 DataType ids 0..4
POSITIONS = 1500  # encoder positions of a 30-s window
DEFAULT_MARGIN = 200


def read_ct2_model(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 ``model.bin`` whose names start with ``prefix``."""
    path = Path(path)
    data = path.read_bytes()
    off = 0

    def take(fmt: str) -> int:
        nonlocal off
        (v,) = struct.unpack_from(fmt, data, off)
        off += struct.calcsize(fmt)
        return v

    def string() -> str:
        nonlocal off
        n = take("H")
        s = data[off: off + n - 1].decode("utf-8")
        off += n
        return s

    try:
        take("I")  # binary version
        string()  # spec name
        take("I")  # revision
        out = {}
        for _ in range(take("I")):
            name = string()
            dims = [take("I") for _ in range(take("B"))]
            dtype, nbytes = _DTYPES[take("B")], take("I")
            if name.startswith(prefix):
                count = nbytes // np.dtype(dtype).itemsize
                out[name] = np.frombuffer(data, dtype, count, off).reshape(dims)
            off += nbytes
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as e:
        raise PolymodalError(f"{path}: not a CTranslate2 model file I can read ({e})") from None
    return out


class TorchWhisperEncoder:
    """Whisper's audio encoder (2 convolutions, sinusoidal positions, pre-norm layers)."""

    def __init__(self, model_bin: str | Path):
        v = read_ct2_model(model_bin, "encoder/")
        if "encoder/conv1/weight" not in v:
            raise PolymodalError(f"{model_bin}: no Whisper encoder in this CTranslate2 model")
        self.heads = int(v.pop("encoder/num_heads"))
        self.w = {k[len("encoder/"):]: torch.from_numpy(x.astype(np.float32))
                  for k, x in v.items()}
        self.layers = sum(1 for k in self.w if k.endswith("self_attention/linear_0/weight"))

    def front(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, T]`` log-mel -> ``[B, ceil(T / 2), D]`` layer-0 input."""
        w = self.w
        x = F.gelu(F.conv1d(mel, w["conv1/weight"], w["conv1/bias"], padding=1))
        x = F.gelu(F.conv1d(x, w["conv2/weight"], w["conv2/bias"], stride=2, padding=1))
        x = x.transpose(1, 2)
        return x + w["position_encodings/encodings"][: x.shape[1]]

    def norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.w[f"{name}/gamma"], self.w[f"{name}/beta"])

    def kv(self, i: int, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Queries, keys, values ``[B, heads, T, D / heads]`` of layer ``i`` for input ``x``."""
        p = f"layer_{i}/self_attention/"
        qkv = F.linear(self.norm(x, p + "layer_norm"), self.w[p + "linear_0/weight"],
                       self.w[p + "linear_0/bias"])
        b, t, d3 = qkv.shape
        return tuple(qkv.view(b, t, 3, self.heads, d3 // 3 // self.heads).permute(2, 0, 3, 1, 4))

    def layer(self, i: int, x: torch.Tensor, extra: tuple | None = None) -> torch.Tensor:
        """Layer ``i`` on ``x``; ``extra`` = keys / values of further positions to attend to."""
        p, w = f"layer_{i}/", self.w
        q, k, v = self.kv(i, x)
        if extra is not None:
            k = torch.cat([k, extra[0].expand(len(x), -1, -1, -1)], 2)
            v = torch.cat([v, extra[1].expand(len(x), -1, -1, -1)], 2)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        x = x + F.linear(a, w[p + "self_attention/linear_1/weight"],
                         w[p + "self_attention/linear_1/bias"])
        y = F.gelu(F.linear(self.norm(x, p + "ffn/layer_norm"), w[p + "ffn/linear_0/weight"],
                            w[p + "ffn/linear_0/bias"]))
        return x + F.linear(y, w[p + "ffn/linear_1/weight"], w[p + "ffn/linear_1/bias"])

    @torch.inference_mode()
    def forward(self, mel: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Exact encoder states ``[B, T / 2, D]`` of log-mel ``[B, n_mels, T]``."""
        x = self.front(torch.as_tensor(mel, dtype=torch.float32))
        for i in range(self.layers):
            x = self.layer(i, x)
        return self.norm(x, "layer_norm")


class SilenceCachedEncoder:
    """The 30-s padded window of a short clip at the cost of its live positions (see the
    module docstring): padding keys / values of every layer from a silent window."""

    def __init__(self, encoder: TorchWhisperEncoder, n_mels: int, margin: int = DEFAULT_MARGIN):
        self.enc, self.margin = encoder, int(margin)
        with torch.inference_mode():
            x = encoder.front(torch.zeros(1, n_mels, 2 * POSITIONS))
            self.cache = []
            for i in range(encoder.layers):
                _, k, v = encoder.kv(i, x)
                self.cache.append((k, v))
                x = encoder.layer(i, x)
            self.silent = encoder.norm(x, "layer_norm")[0]  # [1500, D]

    def live(self, content_frames: int) -> int:
        """Positions computed for a clip of ``content_frames`` mel frames."""
        return min(POSITIONS, -(-int(content_frames) // 2) + self.margin)

    @torch.inference_mode()
    def states(self, mel: np.ndarray, content_frames: int) -> torch.Tensor:
        """Live encoder states ``[live, D]`` of one clip's padded log-mel ``[n_mels, 3000]``."""
        n = self.live(content_frames)
        x = self.enc.front(torch.as_tensor(mel[None, :, : 2 * n + 2], dtype=torch.float32))
        x = x[:, :n]
        for i, (k, v) in enumerate(self.cache):
            x = self.enc.layer(i, x, (k[:, :, n:], v[:, :, n:]))
        return self.enc.norm(x, "layer_norm")[0]

    def window(self, live: torch.Tensor) -> torch.Tensor:
        """The whole window's encoder output ``[1500, D]``: live states, then silence's."""
        return torch.cat([live, self.silent[len(live):]], 0)
