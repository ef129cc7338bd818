"""Quality gate of the image backends: OpenClipart text<->image retrieval with each
``efficientnet-lite0`` backend (captions fixed: minilm torch fp32), R@10 of an InfoNCE fit and of
the ridge baseline, and the min / mean cosine of each backend's image vectors to torch fp32 on
the same drawings and on MNIST digits.

    .venv/bin/python benchmarks/image_backend_gate.py --data ../shared/data --limit 2000 --out runs/image-gate
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SETTINGS = (("torch", "fp32"), ("onnx", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"),
            ("torch", "bf16"), ("onnx", "int8"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--digits", type=int, default=500, help="MNIST digits for the cosine")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "image-gate")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--only", default="", help="comma list of settings besides torch-fp32 (the "
                    "reference, always first), e.g. onnx-fp32,openvino-bf16 (default: all)")
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
    digits = args.out / "digits" / "manifest.jsonl"
    if not digits.is_file():
        digits = build_dataset("mnist", args.data / "mnist", args.out / "digits",
                               limit=args.digits, progress=False)
    recs = read_manifest(man).records
    images = sorted({str(r.image) for r in recs})
    digit_images = sorted({str(r.image) for r in read_manifest(digits).records})
    print(f"{len(recs)} rows, {sum(r.split == 'test' for r in recs)} test rows, "
          f"{len(images)} drawings, {len(digit_images)} digits")
    ref = None
    rows = []
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    for b, p in SETTINGS:
        if only and (b, p) != SETTINGS[0] and f"{b}-{p}" not in only:
            continue
        enc = build_encoder("efficientnet-lite0", backend=b, precision=p,
                            cache_dir=str(args.out / "cache"))
        vec = [enc.encode(images, normalize=True), enc.encode(digit_images, normalize=True)]
        ref = vec if ref is None else ref
        cos = [(v * r).sum(1) for v, r in zip(vec, ref)]
        cfg = RetrievalConfig(manifest=str(man), relevance="caption_group", batch_size=128,
                              loss="infonce", backend=f"text=torch,image={b}",
                              encoder_precision=f"text=fp32,image={p}",
                              train=TrainConfig(epochs=args.epochs, patience=5, seed=0,
                                                progress=False))
        res = fit_retrieval(cfg, args.out / f"{b}-{p}", progress=False)
        r10 = [res["metrics"][d]["R@10"] for d in ("text->image", "image->text")]
        ridge = [res["baselines"]["ridge"][d]["R@10"] for d in ("text->image", "image->text")]
        rows.append((b, p, r10, ridge))
        print(f"{b}-{p}: {enc.id}\n  cosine to torch fp32: drawings min {cos[0].min():.5f} "
              f"mean {cos[0].mean():.5f}, digits min {cos[1].min():.5f} mean "
              f"{cos[1].mean():.5f} | R@10 text->image infonce {100 * r10[0]:.2f} ridge "
              f"{100 * ridge[0]:.2f}, image->text infonce {100 * r10[1]:.2f} ridge "
              f"{100 * ridge[1]:.2f}", flush=True)
    base = rows[0]
    for b, p, r10, ridge in rows[1:]:
        print(f"{b}-{p}: R@10 change text->image infonce {100 * (r10[0] - base[2][0]):+.2f} "
              f"ridge {100 * (ridge[0] - base[3][0]):+.2f}; image->text infonce "
              f"{100 * (r10[1] - base[2][1]):+.2f} ridge {100 * (ridge[1] - base[3][1]):+.2f} "
              "points")


if __name__ == "__main__":
    main()
