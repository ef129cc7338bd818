"""efficientnet-lite0 backends (torch fp32 / bf16, onnx fp32 / int8) and resolutions on the
bundled openclipart and MNIST sample images: vectors against torch fp32, ids, deterministic
int8 calibration, artifacts reused from the cache folder."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from polymodal.core.errors import UsageError
from polymodal.data.image_input import native_side
from polymodal.features.encoders.image import EfficientNetLite0Encoder

pytestmark = pytest.mark.timeout(120)
SAMPLE = Path(__file__).resolve().parents[2] / "src" / "polymodal" / "sample"
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def images() -> list[Path]:
    clip = sorted((SAMPLE / "openclipart" / "images").glob("*.png"))[::40][:8]
    digits = sorted((SAMPLE / "av-digits" / "images").glob("*.png"))[::60][:4]
    assert len(clip) == 8 and len(digits) == 4
    return clip + digits


@pytest.fixture(scope="module")
def calib() -> list[Path]:
    return sorted((SAMPLE / "openclipart" / "images").glob("*.png"))[1::25][:12]


@pytest.fixture(scope="module")
def reference(images) -> torch.Tensor:
    return EfficientNetLite0Encoder(image_size=128, backend="torch", precision="fp32").encode(images)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b)


# measured on 500 openclipart + 500 MNIST images (docs/RESULTS.md §1): onnx fp32 min 1.0000,
# torch bf16 min 0.981 mean 0.998, onnx int8 min 0.83 mean 0.985; openvino bf16 (its stem in
# fp32) min 0.9989 on 400 drawings -- thresholds sit below those. openvino bf16 is held to the
# 0.99 gate of a default: whole-network bf16 (torch bf16 here) misses it on drawings.
@pytest.mark.parametrize("backend, precision, min_cos, mean_cos", [
    ("onnx", "fp32", 0.9999, 0.9999), ("torch", "bf16", 0.97, 0.995),
    ("onnx", "int8", 0.80, 0.96), ("openvino", "fp32", 0.9999, 0.9999),
    ("openvino", "bf16", 0.995, 0.999)])
def test_backend_vectors_match_torch_fp32(images, calib, reference, tmp_path, backend,
                                          precision, min_cos, mean_cos):
    if backend == "openvino":
        pytest.importorskip("openvino")
    enc = EfficientNetLite0Encoder(image_size=128, backend=backend, precision=precision,
                                   cache_dir=tmp_path, calibration=calib)
    x = enc.encode(images)
    assert x.shape == reference.shape and x.dtype == torch.float32
    c = cosine(x, reference)
    assert c.min() >= min_cos and c.mean() >= mean_cos, (c.min(), c.mean())
    assert enc.id.endswith(f"|backend={backend}-{precision}")


def test_ids_differ_per_backend_and_resolution(calib, tmp_path):
    ids = {EfficientNetLite0Encoder(image_size=s, backend=b, precision=p, cache_dir=tmp_path,
                                    calibration=calib).id
           for s in (224, "native") for b, p in (("torch", "fp32"), ("torch", "bf16"))}
    assert len(ids) == 4
    assert any("|size=native64-224|" in i for i in ids) and any("|size=224|" in i for i in ids)
    # the calibration images are part of the int8 id
    a = EfficientNetLite0Encoder(image_size=128, backend="onnx", precision="int8",
                                 cache_dir=tmp_path, calibration=calib[:6])
    b = EfficientNetLite0Encoder(image_size=128, backend="onnx", precision="int8",
                                 cache_dir=tmp_path, calibration=calib[6:])
    assert a.id != b.id and "|calib=" in a.id and a.artifact != b.artifact


def test_int8_deterministic_and_artifacts_reused(images, calib, tmp_path, monkeypatch):
    one = EfficientNetLite0Encoder(image_size=128, backend="onnx", precision="int8",
                                   cache_dir=tmp_path / "a", calibration=calib)
    two = EfficientNetLite0Encoder(image_size=128, backend="onnx", precision="int8",
                                   cache_dir=tmp_path / "b", calibration=calib)
    assert one.artifact.read_bytes() == two.artifact.read_bytes()
    assert torch.equal(one.encode(images), two.encode(images))
    assert one.artifact.parent == tmp_path / "a" / "models"
    stamp = {p.name: p.stat().st_mtime_ns for p in one.artifact.parent.iterdir()}
    assert len(stamp) == 2 and not any(n.startswith(".") for n in stamp)  # fp32 + int8, no temp

    def no_rebuild(*a, **k):
        raise AssertionError("artifact rebuilt")

    import onnxruntime.quantization as q

    monkeypatch.setattr(torch.onnx, "export", no_rebuild)
    monkeypatch.setattr(q, "quantize_static", no_rebuild)
    again = EfficientNetLite0Encoder(image_size=128, backend="onnx", precision="int8",
                                     cache_dir=tmp_path / "a", calibration=calib)
    assert {p.name: p.stat().st_mtime_ns for p in one.artifact.parent.iterdir()} == stamp
    assert torch.equal(again.encode(images[:3]), one.encode(images[:3]))


def test_native_resolution(tmp_path):
    assert [native_side(*s) for s in [(28, 28), (128, 128), (100, 40), (500, 300), (8, 8)]] \
        == [64, 128, 128, 224, 64]
    paths = []
    for i, size in enumerate([(28, 28), (128, 128), (28, 28), (300, 90)]):
        p = tmp_path / f"{i}.png"
        Image.linear_gradient("L").resize(size).rotate(30 * i).save(p)
        paths.append(p)
    enc = EfficientNetLite0Encoder(image_size="native")
    assert [enc.prepare(p).shape for p in paths] == [(64, 64, 3), (128, 128, 3), (64, 64, 3),
                                                    (224, 224, 3)]
    together = enc.encode(paths)
    alone = torch.stack([enc.encode(p) for p in paths])
    assert torch.allclose(together, alone, atol=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    ({"image_size": 100}, "image_size must be 'native' or a multiple of 32 that is at least 32, "
                          "got '100'"),
    ({"image_size": "big"}, "image_size must be 'native' or a multiple of 32 that is at least "
                            "32, got 'big'"),
    ({"backend": "onnx", "precision": "bf16"}, "encoder 'efficientnet-lite0' cannot run 'onnx' "
                                               "in bf16; it runs on torch (fp32/bf16), onnx "
                                               "(fp32/int8), openvino (fp32/bf16)"),
    ({"backend": "openvino", "precision": "int8"}, "encoder 'efficientnet-lite0' cannot run "
                                                   "'openvino' in int8; it runs on torch "
                                                   "(fp32/bf16), onnx (fp32/int8), openvino "
                                                   "(fp32/bf16)")])
def test_bad_settings_are_one_line_usage_errors(kwargs, message):
    with pytest.raises(UsageError) as e:
        EfficientNetLite0Encoder(**kwargs)
    assert str(e.value) == message


def test_openvino_bf16_runs_its_stem_in_fp32_and_names_it(images, tmp_path):
    """The bf16 recipe is two graphs (stem + first block in fp32, the rest in bf16); its id
    says so, and a run whose features came from whole-network OpenVINO bf16 (an id without
    the recipe) is told to re-fit instead of being encoded differently."""
    pytest.importorskip("openvino")
    from polymodal.core.errors import PolymodalError
    from polymodal.features.encoders.base import rebuild_encoder

    enc = EfficientNetLite0Encoder(backend="openvino", precision="bf16", cache_dir=tmp_path)
    assert "|bf16=fp32-stem1|backend=openvino-bf16" in enc.id and len(enc._onnx.models) == 2
    assert sorted(p.name.rsplit("-", 1)[1] for p in (tmp_path / "models").glob("*.onnx")) == [
        "a.onnx", "b.onnx"]  # no whole-network export is made for it
    again = rebuild_encoder("efficientnet-lite0", "image", enc.id, cache_dir=str(tmp_path))
    assert again.id == enc.id and torch.equal(again.encode(images), enc.encode(images))
    old = enc.id.replace("|bf16=fp32-stem1", "")
    with pytest.raises(PolymodalError, match="re-fit the run"):
        rebuild_encoder("efficientnet-lite0", "image", old, cache_dir=str(tmp_path))
