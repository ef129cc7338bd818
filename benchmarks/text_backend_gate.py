"""Quality gate of the text backends: text->image retrieval on OpenClipart with each ``minilm``
backend (images fixed: efficientnet-lite0 torch fp32), R@10 of the InfoNCE fit and of the
ridge baseline, and the min / mean cosine of each backend's caption vectors to torch fp32.

    .venv/bin/python benchmarks/text_backend_gate.py --data ../shared/data --limit 2000 --out runs/gate
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SETTINGS = (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8"),
            ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "text-gate")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--only", default="", help="comma list of settings besides torch-fp32 (the "
                    "reference, always first), e.g. openvino-bf16,openvino-int8 (default: all)")
    args = ap.parse_args()
    import torch

    from polymodal.data.datasets import build_dataset
    from polymodal.data.manifest import read_manifest
    from polymodal.features.encoders import build_encoder
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import fit_retrieval
    from polymodal.train.config import TrainConfig

    print(f"load {os.getloadavg()[0]:.2f}, cpu {torch.backends.cpu.get_cpu_capability()}")
    man = args.out / "data" / "manifest.jsonl"
    if not man.is_file():
        man = build_dataset("openclipart", args.data / "openclipart", args.out / "data",
                            limit=args.limit, progress=False)
    recs = read_manifest(man).records
    texts = list(dict.fromkeys(t for r in recs for t in r.text))
    print(f"{len(recs)} rows, {sum(r.split == 'test' for r in recs)} test rows")
    ref = None
    rows = []
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    for b, p in SETTINGS:
        if only and (b, p) != SETTINGS[0] and f"{b}-{p}" not in only:
            continue
        vec = build_encoder("minilm", backend=b, precision=p).encode(texts)
        ref = vec if ref is None else ref
        cos = (vec * ref).sum(1)
        cfg = RetrievalConfig(manifest=str(man), relevance="caption_group", batch_size=128,
                              backend=f"text={b},image=torch",
                              encoder_precision=f"text={p},image=fp32",
                              train=TrainConfig(epochs=args.epochs, patience=5, seed=0,
                                                progress=False))
        res = fit_retrieval(cfg, args.out / f"{b}-{p}", progress=False)
        r10 = res["metrics"]["text->image"]["R@10"]
        ridge = res["baselines"]["ridge"]["text->image"]["R@10"]
        rows.append((b, p, r10, ridge))
        print(f"{b}-{p}: captions {len(texts)} cosine min {cos.min():.5f} mean {cos.mean():.5f}"
              f" | text->image R@10 infonce {100 * r10:.2f} ridge {100 * ridge:.2f}", flush=True)
    base = rows[0]
    for b, p, r10, ridge in rows[1:]:
        print(f"{b}-{p}: R@10 change infonce {100 * (r10 - base[2]):+.2f} ridge "
              f"{100 * (ridge - base[3]):+.2f} points")


if __name__ == "__main__":
    main()
