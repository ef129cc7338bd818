"""minilm on OpenVINO int8 (NNCF static quantization, issue 10): vectors against torch fp32 on
real captions (the bundled OpenClipart sample), independence from batch-mates, the cache id,
and the quantized IR made once and reused. Quantization takes ~15-45 s, hence slow."""
from __future__ import annotations

import numpy as np
import pytest

from polymodal.data.datasets import sample_path
from polymodal.data.manifest import read_manifest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def captions() -> list[str]:
    recs = read_manifest(sample_path("openclipart")).records
    return list(dict.fromkeys(t for r in recs for t in r.text))[:240]


def test_openvino_int8_matches_fp32_and_is_reused(tmp_path, captions):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    import polymodal
    from polymodal.features.encoders import build_encoder

    ref = build_encoder("minilm", backend="torch", precision="fp32").encode(captions).numpy()
    enc = build_encoder("minilm", backend="openvino", precision="int8", cache_dir=tmp_path)
    assert enc.id.endswith("|backend=openvino-int8")
    got = enc.encode(captions).numpy()
    cos = (got * ref).sum(1)
    assert cos.min() >= 0.99 and cos.mean() >= 0.998, (cos.min(), cos.mean())
    # int8 ranges are fixed at calibration, so a text's vector barely depends on its batch-mates
    alone = np.stack([enc.encode(t).numpy() for t in captions[:6]])
    assert np.abs(alone - got[:6]).max() < 5e-3
    xml = sorted((tmp_path / "models").glob("*-ov-int8.xml"))
    assert len(xml) == 1 and xml[0].with_suffix(".bin").is_file()
    mtime = xml[0].stat().st_mtime_ns
    again = build_encoder("minilm", backend="openvino", precision="int8", cache_dir=tmp_path)
    np.testing.assert_allclose(again.encode(captions[:20]).numpy(), got[:20], atol=1e-5)
    assert xml[0].stat().st_mtime_ns == mtime  # loaded, not quantized again
    # the feature cache keeps int8 vectors apart from fp32 ones
    a = polymodal.encode(captions[:5], "minilm", cache_dir=tmp_path, backend="openvino",
                         precision="int8")
    b = polymodal.encode(captions[:5], "minilm", cache_dir=tmp_path, backend="torch",
                         precision="fp32")
    np.testing.assert_allclose(b, ref[:5], atol=2e-3)  # float16 cache
    assert not np.allclose(a, b, atol=1e-4)
    assert len([d for d in tmp_path.iterdir() if d.name.startswith("minilm")]) == 2
