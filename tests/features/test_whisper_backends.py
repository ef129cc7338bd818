"""whisper-tiny backends (issue 10): CTranslate2 int8 against float32 on real FSDD
clips, the cache ids, refused settings, and transcription with the default."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("faster_whisper")

from polymodal.core.errors import UsageError  # noqa: E402
from polymodal.features.encoders.registry import build_encoder  # noqa: E402
from polymodal.features.encoders.whisper import WhisperEncoder  # noqa: E402
from polymodal.tasks.transcribe import Transcriber, transcribe, transcript_wer  # noqa: E402

pytestmark = pytest.mark.timeout(120)

# clips Whisper tiny.en gets right in float32 (checked), spoken by two speakers
CLEAR = [("jackson", 1), ("jackson", 2), ("jackson", 3), ("jackson", 7), ("jackson", 9),
         ("theo", 0), ("theo", 3), ("theo", 8)]
WORDS = "zero one two three four five six seven eight nine".split()


@pytest.fixture(scope="module")
def clips(shared_data):
    rec = shared_data / "fsdd" / "recordings"
    return [rec / f"{d}_{s}_0.wav" for s, d in CLEAR], [WORDS[d] for _, d in CLEAR]


@pytest.fixture(scope="module")
def encoders():
    return {"int8": build_encoder("whisper-tiny", backend="ctranslate2"),
            "fp32": build_encoder("whisper-tiny", backend="ctranslate2", precision="fp32")}


def test_ctranslate2_default_is_int8(encoders):
    enc = encoders["int8"]
    assert enc.resolved == ("ctranslate2", "int8")
    assert WhisperEncoder.default_backend == ("torch", "fp32")  # whisper_torch
    assert enc.compute_type == "int8_float32"
    assert encoders["fp32"].compute_type == "float32"


def test_ids_differ_per_precision(encoders):
    a, b = encoders["int8"].id, encoders["fp32"].id
    assert a.endswith("|backend=ctranslate2-int8") and b.endswith("|backend=ctranslate2-fp32")
    assert a != b


def test_int8_vectors_close_to_fp32(encoders, clips):
    paths, _ = clips
    a, b = encoders["int8"].encode(paths), encoders["fp32"].encode(paths)
    assert a.shape == b.shape == (len(paths), 384)
    cos = torch.nn.functional.cosine_similarity(a, b)
    assert cos.min().item() >= 0.99, cos
    assert not torch.equal(a, b)  # a different computation, not the same model twice


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "onnx"}, "encoder 'whisper-tiny' has no backend 'onnx'; it runs on "
                          "torch (fp32), ctranslate2 (int8/fp32)"),
    ({"precision": "bf16"}, "encoder 'whisper-tiny' cannot run 'torch' in bf16; it runs "
                            "on torch (fp32), ctranslate2 (int8/fp32)"),
    ({"backend": "torch-bf16"}, "encoder 'whisper-tiny' cannot run 'torch' in bf16; it runs on "
                                "torch (fp32), ctranslate2 (int8/fp32)"),
])
def test_unsupported_setting_is_one_line(kwargs, message):
    with pytest.raises(UsageError) as e:
        WhisperEncoder(**kwargs)
    assert str(e.value) == message


def test_transcribe_refuses_bad_precision_before_reading(tmp_path):
    missing = tmp_path / "absent.wav"  # never opened: the setting is checked first
    with pytest.raises(UsageError, match="cannot run 'torch' in bf16"):
        transcribe([missing], precision="bf16", progress=False)


def test_transcription_with_default_still_correct(clips):
    paths, refs = clips
    tr = Transcriber(threads=2)
    assert tr.id.endswith("|backend=torch-fp32")
    texts = tr.transcribe_waves([tr.load(p) for p in paths])
    assert transcript_wer(texts, refs) == 0.0, texts
