"""Text encoding throughput: polymodal's ``minilm`` (each backend) vs ``SentenceTransformer.encode``.

Same model (all-MiniLM-L6-v2, bundled offline), same distinct sentences, same CPU. Prints
sentences/s of ST (torch fp32) and of ours with each backend (torch fp32 / bf16, onnx fp32 /
int8, and ``auto``, the default), each one's ratio to ST and min / mean cosine to ST's vectors;
also ST's own ``backend="onnx"`` and its dynamic int8 ONNX (``onnx-qint8``) when they load
(they need ``optimum[onnxruntime]``, which wants transformers 4.x: sentence-transformers 5.x). Runs are interleaved (ST, ours per
backend, ST, ...) so background load hits all alike. Last line: ``ratio N.NNx`` (ours ``auto``
vs ST fp32, median over repeats).

    flock /tmp/mv/bench.lock .venv/bin/python benchmarks/encode_text.py [--data ../shared/data] [--n 2000] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

WORDS = ("red blue green small large old new happy quiet bright dark wooden metal cat dog "
         "bird house tree car river mountain city garden child teacher robot flower train "
         "runs sleeps jumps sings reads paints builds watches carries near under behind "
         "across during after before the a one two many").split()


def caption_sentences(data: Path, n: int) -> list[str]:
    """Distinct sentences from openclipart titles + descriptions / keywords."""
    out: dict[str, None] = {}
    with (data / "openclipart" / "captions.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            title, desc = r["title"].strip(), (r.get("description") or "").strip()
            kw = ", ".join((r.get("keywords") or [])[:8])
            text = f"{title}. {desc}" if desc else (f"{title}: {kw}" if kw else title)
            out.setdefault(" ".join(text.split()), None)
    sentences = list(out)
    random.Random(0).shuffle(sentences)
    return sentences[:n]


def synthetic_sentences(n: int) -> list[str]:
    """Distinct random word sequences of 3-40 words (when the real data is absent)."""
    rng, out = random.Random(0), {}
    while len(out) < n:
        out.setdefault(" ".join(rng.choices(WORDS, k=rng.randint(3, 40))) + ".", None)
    return list(out)


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


SETTINGS = (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8"),
            ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"), ("auto", "auto"))


def st_onnx(model_dir: str):
    """ST's own onnx backend, or the reason it cannot load here."""
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(model_dir, device="cpu", backend="onnx"), ""
    except Exception as e:  # noqa: BLE001 - optional comparison
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"


def st_onnx_qint8(onnx_st, model_dir: str, tmp: str):
    """ST's own dynamic int8 ONNX (``export_dynamic_quantized_onnx_model``, avx512_vnni: the
    peers' "onnx-qint8"), built in a copy of the model folder, or the reason it cannot."""
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers import export_dynamic_quantized_onnx_model

        copy = Path(tmp) / "st-model"
        shutil.copytree(model_dir, copy)
        onnx_st.save_pretrained(str(copy))  # the exported model.onnx ST quantizes
        export_dynamic_quantized_onnx_model(onnx_st, "avx512_vnni", str(copy))
        return SentenceTransformer(str(copy), device="cpu", backend="onnx", model_kwargs={
            "file_name": "onnx/model_qint8_avx512_vnni.onnx"}), ""
    except Exception as e:  # noqa: BLE001 - optional comparison
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--st-batch-size", type=int, default=32, help="ST's default is 32")
    ap.add_argument("--only", default="", help="comma list of our settings to time, e.g. "
                    "auto-auto (default: all; fewer runtimes in one process contend less)")
    ap.add_argument("--threads", type=int, default=0, help="torch / OpenVINO threads (default: "
                    "torch's; 1 is fairer on a loaded machine, where 2-thread torch suffers most)")
    args = ap.parse_args()

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    from polymodal.features.encoders.text import MiniLMEncoder

    print(f"load {os.getloadavg()[0]:.2f}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    if (args.data / "openclipart" / "captions.jsonl").is_file():
        sentences, source = caption_sentences(args.data, args.n), "openclipart captions"
    else:
        sentences, source = synthetic_sentences(args.n), "synthetic"
    assert len(set(sentences)) == len(sentences)
    ours = {}
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    for b, p in SETTINGS:
        if only and f"{b}-{p}" not in only:
            continue
        try:
            ours[f"{b}-{p}"] = MiniLMEncoder(backend=b, precision=p)
        except Exception as e:  # noqa: BLE001 - e.g. openvino not installed
            print(f"ours {b}-{p} skipped: {e}")
    auto = ours["auto-auto"].resolved
    model_dir = str(ours["auto-auto"].model_dir)
    refs = {"st-fp32": SentenceTransformer(model_dir, device="cpu")}
    tmp = tempfile.TemporaryDirectory()
    onnx_st, why = st_onnx(model_dir)
    if onnx_st is None:
        print(f"ST backend='onnx' skipped: {why}")
    else:
        refs["st-onnx"] = onnx_st
        q8, why = st_onnx_qint8(onnx_st, model_dir, tmp.name)
        if q8 is None:
            print(f"ST onnx qint8 skipped: {why}")
        else:
            refs["st-onnx-qint8"] = q8
    print(f"{len(sentences)} distinct sentences ({source}); torch threads "
          f"{torch.get_num_threads()}, cpus {os.cpu_count()}; auto = {auto[0]}-{auto[1]}")
    for st in refs.values():  # warm-up
        st.encode(sentences[:64], batch_size=args.st_batch_size)
    for enc in ours.values():
        enc.encode(sentences[:64])

    rates: dict[str, list[float]] = {k: [] for k in [*refs, *ours]}
    vecs: dict[str, torch.Tensor] = {}
    for rep in range(args.repeats):
        for name, st in refs.items():
            t, ref = timed(lambda: st.encode(sentences, batch_size=args.st_batch_size,
                                             convert_to_tensor=True))
            rates[name].append(len(sentences) / t)
            vecs[name] = torch.as_tensor(ref).float().cpu()
        for name, enc in ours.items():
            t, v = timed(lambda: enc.encode(sentences))
            rates[name].append(len(sentences) / t)
            vecs[name] = v
        print(f"run {rep + 1}: " + " | ".join(f"{k} {r[-1]:.1f}/s" for k, r in rates.items()),
              flush=True)
    st_rate = statistics.median(rates["st-fp32"])
    for name in rates:
        cos = torch.nn.functional.cosine_similarity(vecs[name], vecs["st-fp32"])
        rate = statistics.median(rates[name])
        print(f"{name:<12} {rate:8.1f} sentences/s  {rate / st_rate:5.2f}x ST fp32  cosine to "
              f"ST fp32 min {cos.min().item():.5f} mean {cos.mean().item():.5f}")
    print(f"ratio {statistics.median(rates['auto-auto']) / st_rate:.2f}x")


if __name__ == "__main__":
    main()
