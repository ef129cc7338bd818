"""Encoder backends (issue 10): the resolve rules, minilm's onnx / bf16 vectors against torch fp32
on real captions (the bundled OpenClipart sample), per-backend cache ids, the CLI, and a fitted
run that rebuilds its encoder with the backend it was fitted with. The bundled MiniLM only."""
from __future__ import annotations

import json

import numpy as np
import pytest

from polymodal.cli.main import main
from polymodal.core.errors import UsageError
from polymodal.data.datasets import sample_path
from polymodal.data.manifest import read_manifest
from polymodal.features.encoders.backends import (BACKENDS, backend_id, parse_setting,
                                                   resolve_backend, setting_for,
                                                   split_backend_id)

pytestmark = pytest.mark.timeout(120)
MINILM = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8"),
          "openvino": ("fp32", "bf16", "int8")}
SUPPORTED = "torch (fp32/bf16), onnx (fp32/int8), openvino (fp32/bf16/int8)"


@pytest.fixture(scope="module")
def captions() -> list[str]:
    recs = read_manifest(sample_path("openclipart")).records
    return list(dict.fromkeys(t for r in recs for t in r.text))[:240]


@pytest.fixture(scope="module")
def vectors(captions):
    """minilm vectors of the sample's captions per (backend, precision)."""
    from polymodal.features.encoders import build_encoder

    out, ids = {}, {}
    for b, p in (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8")):
        enc = build_encoder("minilm", backend=b, precision=p)
        out[b, p], ids[b, p] = enc.encode(captions).numpy(), enc.id
    return out, ids


def test_resolve_rules():
    default = ("torch", "bf16")
    assert resolve_backend("minilm", MINILM, default) == ("torch", "bf16")
    assert resolve_backend("minilm", MINILM, default, "onnx") == ("onnx", "fp32")
    assert resolve_backend("minilm", MINILM, default, precision="int8") == ("onnx", "int8")
    assert resolve_backend("minilm", MINILM, default, precision="fp32") == ("torch", "fp32")
    assert resolve_backend("minilm", MINILM, ("onnx", "fp32"), "torch-bf16") == ("torch", "bf16")
    assert resolve_backend("logmel", {}, None, "onnx", "int8") is None
    cases = {("onnx", "bf16"): f"encoder 'minilm' cannot run 'onnx' in bf16; it runs on "
                               f"{SUPPORTED}",
             ("torch", "int8"): f"encoder 'minilm' cannot run 'torch' in int8; it runs "
                                f"on {SUPPORTED}",
             ("cuda", "auto"): f"unknown backend 'cuda'; valid: {', '.join(BACKENDS)}",
             ("torch-bf16", "int8"): "backend 'torch-bf16' means precision bf16, not 'int8'"}
    for (b, p), msg in cases.items():
        with pytest.raises(UsageError) as e:
            resolve_backend("minilm", MINILM, default, b, p)
        assert str(e.value) == msg


def test_settings_and_ids():
    assert parse_setting("onnx,audio=torch") == {"": "onnx", "audio": "torch"}
    assert setting_for("text=onnx", "text") == "onnx"
    assert setting_for("text=onnx", "image") == "auto"
    assert setting_for("int8", "audio", "precision") == "int8"
    for bad, msg in {"smell=onnx": "--backend smell=onnx: unknown modality 'smell'; valid: "
                                   "text, image, audio, video",
                     "text=fast": "--backend text=fast: unknown backend 'fast'; valid: "
                                  f"{', '.join(BACKENDS)}",
                     "onnx,torch": "--backend onnx,torch: the default is given twice"}.items():
        with pytest.raises(UsageError) as e:
            parse_setting(bad)
        assert str(e.value) == msg
    rid = "minilm|maxlen=256" + backend_id(("onnx", "int8"))
    assert split_backend_id(rid) == ("minilm|maxlen=256", ("onnx", "int8"))
    assert split_backend_id("logmel|sr=16000") == ("logmel|sr=16000", None)


def test_onnx_and_bf16_match_torch_on_real_captions(vectors, captions):
    vecs, ids = vectors
    ref = vecs["torch", "fp32"]
    cos = {k: (v * ref).sum(1) for k, v in vecs.items()}
    assert len(captions) == 240
    assert cos["onnx", "fp32"].min() >= 0.9999
    assert cos["torch", "bf16"].min() >= 0.999
    # int8 keeps the mean but not every sentence (docs/RESULTS.md): why it is opt-in only
    assert cos["onnx", "int8"].mean() >= 0.99 and cos["onnx", "int8"].min() >= 0.95
    assert len(set(ids.values())) == 4
    assert all(i.endswith(f"|backend={b}-{p}") for (b, p), i in ids.items())


def test_openvino_bf16_matches_torch(vectors, captions):
    pytest.importorskip("openvino")
    from polymodal.features.encoders import build_encoder

    enc = build_encoder("minilm", backend="openvino", precision="bf16")
    cos = (enc.encode(captions).numpy() * vectors[0]["torch", "fp32"]).sum(1)
    assert cos.min() >= 0.9999 and enc.id.endswith("|backend=openvino-bf16")


def test_openvino_streams_give_the_vectors_of_one_request_in_input_order(captions):
    """`run_all` (a 1-thread inference stream per core, batches in flight at once) returns each
    batch's own vectors, bit for bit those of one request run batch after batch."""
    pytest.importorskip("openvino")
    import torch

    from polymodal.features.encoders import build_encoder
    from polymodal.features.encoders.text import encode_token_ids
    from polymodal.features.encoders.text_onnx import OpenVinoTextRunner
    from polymodal.features.encoders.wordpiece import token_ids

    enc = build_encoder("minilm", backend="openvino", precision="bf16")
    runner = enc._onnx
    assert isinstance(runner, OpenVinoTextRunner) and runner.streams == max(1, torch.get_num_threads())
    texts = captions[::-1]  # a new input order: batches are cut from the length-sorted texts
    ids = token_ids(enc.tokenizer, texts)
    one = encode_token_ids(enc._forward, ids, enc.dim, enc.pad_id, max_batch_tokens=512)
    many = encode_token_ids(None, ids, enc.dim, enc.pad_id, max_batch_tokens=512,
                            run_all=runner.run_all)
    assert torch.equal(one, many)
    cos = (torch.nn.functional.normalize(many, dim=-1) * enc.encode(texts)).sum(1)
    assert cos.min() > 0.99999  # encode: the same texts in batches of another token budget


def test_cache_never_mixes_backends(tmp_path, vectors, captions):
    import polymodal

    vecs, _ = vectors
    texts = captions[:5]
    a = polymodal.encode(texts, "minilm", cache_dir=tmp_path, backend="onnx", precision="int8")
    b = polymodal.encode(texts, "minilm", cache_dir=tmp_path, backend="torch", precision="fp32")
    # int8 activations are quantized per batch, so its vectors depend a little on batch-mates
    assert (a * vecs["onnx", "int8"][:5]).sum(1).min() >= 0.95
    np.testing.assert_allclose(b, vecs["torch", "fp32"][:5], atol=2e-3)  # float16 cache
    assert not np.allclose(a, b, atol=1e-4)
    assert len([d for d in tmp_path.iterdir() if d.name.startswith("minilm")]) == 2
    assert sorted(p.name.split("-")[-1] for p in (tmp_path / "models").glob("*.onnx")) == \
        ["fp32.onnx", "int8.onnx"]  # the int8 file is made from the exported fp32 one


def _text_manifest(tmp_path, captions, n=40):
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n"
                            for i, t in enumerate(captions[:n])))
    return path


def test_cli_encode_backend(tmp_path, captions, capsys, vectors):
    man = _text_manifest(tmp_path, captions)
    out = tmp_path / "feat"
    assert main(["encode", str(man), "--out", str(out), "--backend", "onnx", "--precision",
                 "int8", "--cache", str(tmp_path / "c"), "-q"]) == 0
    meta = json.loads((out / "features.json").read_text())["modalities"]["text"]
    assert meta["encoder"].endswith("|backend=onnx-int8") and meta["count"] == 40
    got = np.load(out / "text.npy").astype(np.float32)
    assert (got * vectors[0]["torch", "fp32"][:40]).sum(1).mean() >= 0.99
    capsys.readouterr()
    assert main(["encode", str(man), "--out", str(tmp_path / "bad"), "--backend", "onnx",
                 "--precision", "bf16", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: encoder 'minilm' cannot run 'onnx' in bf16; it runs on {SUPPORTED}"]
    assert not (tmp_path / "bad").exists()


def test_rebuild_uses_the_stored_backend(vectors):
    from polymodal.features.encoders.base import rebuild_encoder

    _, ids = vectors
    assert rebuild_encoder("minilm", "text", ids["onnx", "int8"]).resolved == ("onnx", "int8")
    legacy = split_backend_id(ids["torch", "fp32"])[0]  # a run from before backends
    assert rebuild_encoder("minilm", "text", legacy).resolved == ("torch", "fp32")
    with pytest.raises(Exception, match="re-fit the run"):
        rebuild_encoder("minilm", "text", legacy.replace("maxlen=256", "maxlen=128"))


def test_int8_id_names_its_recipe(vectors):
    """u8u8 (uint8 weights, x86 without VNNI / AMX) and u8s8 give different vectors: the id
    names the one this CPU uses, before the backend suffix; a run whose features came from the
    other recipe cannot be rebuilt silently; an id from before the recipe was named still is."""
    from polymodal.features.encoders.backends import int8_recipe_id
    from polymodal.features.encoders.base import rebuild_encoder
    from polymodal.features.encoders.runtimes import int8_unsigned_weights

    _, ids = vectors
    here = int8_recipe_id(int8_unsigned_weights())
    assert ids["onnx", "int8"].endswith(f"|l2{here}|backend=onnx-int8")
    assert split_backend_id(ids["onnx", "int8"])[1] == ("onnx", "int8")
    assert all("|int8=" not in ids[k] for k in ids if k != ("onnx", "int8"))
    other = ids["onnx", "int8"].replace(here, int8_recipe_id(not int8_unsigned_weights()))
    with pytest.raises(Exception, match="re-fit the run"):
        rebuild_encoder("minilm", "text", other)
    old = ids["onnx", "int8"].replace(here, "")
    assert rebuild_encoder("minilm", "text", old).id == ids["onnx", "int8"]


def test_logmel_ignores_backend():
    from polymodal.features.encoders import build_encoder

    assert build_encoder("logmel", backend="onnx", precision="int8").id == \
        build_encoder("logmel").id
    with pytest.raises(UsageError, match="^encoder 'hf:some/model' has no backend 'onnx'; it "
                                         r"runs on torch \(fp32\)$"):  # before any download
        build_encoder("hf:some/model", "text", backend="onnx")


def test_fitted_run_searches_with_its_backend(tmp_path):
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import fit_retrieval
    from polymodal.tasks.retrieval.predict import load_run, search_run
    from polymodal.train.config import TrainConfig

    cfg = RetrievalConfig(manifest=str(sample_path("openclipart")), relevance="caption_group",
                          loss="infonce",  # the backend plumbing, not the model selection
                          batch_size=128, backend="text=onnx", encoder_precision="text=int8",
                          train=TrainConfig(epochs=2, progress=False))
    fit_retrieval(cfg, tmp_path / "run", with_baselines=False, progress=False)
    run = load_run(tmp_path / "run")
    assert run.encoder_ids["text"].endswith("|backend=onnx-int8")
    assert run.encoder("text").id == run.encoder_ids["text"]
    assert run.encoder("image").id == run.encoder_ids["image"]
    hits = search_run(run, text="a red bird", k=3)
    assert len(hits) == 3
