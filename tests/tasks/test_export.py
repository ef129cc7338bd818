"""``polymodal export RUN --format onnx``: a retrieval run fitted on the bundled OpenClipart
sample, exported, loaded by ``polymodal.load`` in a fresh interpreter that never imports torch,
and compared with the torch run (query vectors and top-10 hits)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from polymodal.cli.main import main
from polymodal.data.datasets import sample_path
from polymodal.data.manifest import read_manifest
from polymodal.tasks.retrieval.config import RetrievalConfig
from polymodal.tasks.retrieval.fit import fit_retrieval
from polymodal.tasks.retrieval.predict import Retriever
from polymodal.train.config import TrainConfig

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytestmark = pytest.mark.timeout(180)

TORCH_FREE = r"""
import json, sys
import numpy as np
import polymodal
model = polymodal.load(sys.argv[1])
queries = json.loads(sys.argv[2])
hits = model.search(queries, 10)
vec = model.embed(queries)
img = model.embed(sys.argv[3], "image")
print(json.dumps({"torch": "torch" in sys.modules, "type": type(model).__name__,
                  "ids": [[h["id"] for h in hs] for hs in hits],
                  "vec": vec.tolist(), "img": img.tolist()}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    cfg = RetrievalConfig(manifest=str(sample_path("openclipart")), relevance="caption_group",
                          dim=64, hidden=128, batch_size=128, loss="infonce",
                          train=TrainConfig(epochs=3, progress=False))
    fit_retrieval(cfg, tmp / "run", with_baselines=False, progress=False)
    assert main(["export", str(tmp / "run"), "--format", "onnx", "--out", str(tmp / "ex")]) == 0
    return tmp


def _queries() -> list[str]:
    recs = read_manifest(sample_path("openclipart")).records
    return [r.text[0] for r in recs[100:140]]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_export_loads_without_torch_and_matches(exported):
    ex = exported / "ex"
    doc = json.loads((ex / "export.json").read_text())
    assert doc["format"] == "polymodal-export" and doc["query"] == "text"
    assert doc["encoders"]["text"]["max_length"] == 256 and doc["dim"] == 64
    assert doc["check"]["queries"] == 64 and doc["check"]["cosine_min"] >= 0.99
    queries = _queries()
    image = str(read_manifest(sample_path("openclipart")).records[7].image)
    out = subprocess.run([sys.executable, "-c", TORCH_FREE, str(ex), json.dumps(queries), image],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["torch"] is False and res["type"] == "ExportedRetriever"
    ref = Retriever.load(exported / "run")
    cos = _cos(ref.embed(queries), np.array(res["vec"], np.float32))
    assert cos.min() >= 0.99, cos.min()
    assert _cos(ref.embed([image], "image"), np.array([res["img"]], np.float32))[0] >= 0.99
    ref_ids = [[h.id for h in hs] for hs in ref.search(queries, 10)]
    same = np.mean([set(a) == set(b) for a, b in zip(ref_ids, res["ids"])])
    assert same >= 0.95, same


def test_int8_export_reports_its_cosine(exported, capsys):
    capsys.readouterr()
    assert main(["export", str(exported / "run"), "--int8", "--out",
                 str(exported / "ex8")]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("cosine to the torch run: min 0.9"), line
    doc = json.loads((exported / "ex8" / "export.json").read_text())
    assert doc["int8"] is True and doc["encoders"]["text"]["int8"] is True
    assert 0.9 <= doc["check"]["cosine_min"] <= doc["check"]["cosine_mean"] <= 1.0
    assert (exported / "ex8" / "encoder_text.onnx").stat().st_size < \
        0.7 * (exported / "ex" / "encoder_text.onnx").stat().st_size  # MatMuls int8


def test_export_errors_are_one_line(exported, tmp_path, capsys):
    other = tmp_path / "cls"  # a complete run folder of another task
    shutil.copytree(exported / "run", other)
    doc = yaml.safe_load((exported / "run" / "config.yaml").read_text())
    doc["task"] = "classification"
    (other / "config.yaml").write_text(yaml.safe_dump(doc))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("mine")
    for args, msg in (
            (["export", str(other), "--out", str(tmp_path / "o")],
             "error: export supports retrieval runs for now"),
            (["export", str(exported / "run"), "--out", str(busy)],
             f"error: --out {busy} exists and is not an exported run; give a new folder")):
        capsys.readouterr()
        assert main(args) == 2
        assert capsys.readouterr().err.strip().splitlines() == [msg]
    assert (busy / "x.txt").read_text() == "mine" and not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    damaged = tmp_path / "damaged"  # an export whose tokenizer.json is cut short
    shutil.copytree(exported / "ex", damaged)
    tok = damaged / "tokenizer.json"
    tok.write_bytes(tok.read_bytes()[:100])
    import polymodal
    from polymodal.core.errors import PolymodalError

    with pytest.raises(PolymodalError) as e:
        polymodal.load(damaged).search(text="a cat", k=3)
    assert str(e.value).startswith(f"cannot load the exported tokenizer: {tok}: ")
    assert len(str(e.value).splitlines()) == 1
