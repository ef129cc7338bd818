"""Quality gate of the image backends: OpenClipart text<->image retrieval with each
``efficientnet-lite0`` backend (captions fixed: minilm torch fp32), R@10 of an InfoNCE fit and of
the ridge baseline, and the min / mean cosine of each backend's image vectors to torch fp32 on
the same drawings and on MNIST digits.

    .venv/bin/python benchmarks/image_backend_gate.py --data ../shared/data --limit 2000 --out runs/image-gate
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
SETTINGS = (("torch", "fp32"), ("onnx", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"),
            ("torch", "bf16"), ("onnx", "int8"))
DIRS = ("text->image", "image->text")


def main() -> None:
    from _gate import clipart_manifest, fit_scores, gate_parser, wanted

    ap = gate_parser(__doc__, "image-gate", "onnx-fp32,openvino-bf16")
    ap.add_argument("--digits", type=int, default=500, help="MNIST digits for the cosine")
    args = ap.parse_args()
    from polymodal.data.datasets import build_dataset
    from polymodal.data.manifest import read_manifest
    from polymodal.features.encoders import build_encoder

    man = clipart_manifest(args)
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
    for b, p in wanted(SETTINGS, args.only):
        enc = build_encoder("efficientnet-lite0", backend=b, precision=p,
                            cache_dir=str(args.out / "cache"))
        vec = [enc.encode(images, normalize=True), enc.encode(digit_images, normalize=True)]
        ref = vec if ref is None else ref
        cos = [(v * r).sum(1) for v, r in zip(vec, ref)]
        r10, ridge = fit_scores(man, args.out / f"{b}-{p}", f"text=torch,image={b}",
                                f"text=fp32,image={p}", args.epochs)
        rows.append((b, p, r10, ridge))
        print(f"{b}-{p}: {enc.id}\n  cosine to torch fp32: drawings min {cos[0].min():.5f} "
              f"mean {cos[0].mean():.5f}, digits min {cos[1].min():.5f} mean "
              f"{cos[1].mean():.5f} | R@10 "
              + ", ".join(f"{d} infonce {100 * r10[d]:.2f} ridge {100 * ridge[d]:.2f}"
                          for d in DIRS), flush=True)
    base = rows[0]
    for b, p, r10, ridge in rows[1:]:
        print(f"{b}-{p}: R@10 change " + "; ".join(
            f"{d} infonce {100 * (r10[d] - base[2][d]):+.2f} ridge "
            f"{100 * (ridge[d] - base[3][d]):+.2f}" for d in DIRS) + " points")


if __name__ == "__main__":
    main()
