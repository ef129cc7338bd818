"""Quality gate of the text backends: text->image retrieval on OpenClipart with each ``minilm``
backend (images fixed: efficientnet-lite0 torch fp32), R@10 of the InfoNCE fit and of the
ridge baseline, and the min / mean cosine of each backend's caption vectors to torch fp32.

    .venv/bin/python benchmarks/text_backend_gate.py --data ../shared/data --limit 2000 --out runs/gate
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
SETTINGS = (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8"),
            ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"))


def main() -> None:
    from _gate import clipart_manifest, fit_scores, gate_parser, wanted

    args = gate_parser(__doc__, "text-gate", "openvino-bf16,openvino-int8").parse_args()
    from polymodal.data.manifest import read_manifest
    from polymodal.features.encoders import build_encoder

    man = clipart_manifest(args)
    recs = read_manifest(man).records
    texts = list(dict.fromkeys(t for r in recs for t in r.text))
    print(f"{len(recs)} rows, {sum(r.split == 'test' for r in recs)} test rows")
    ref = None
    rows = []
    for b, p in wanted(SETTINGS, args.only):
        vec = build_encoder("minilm", backend=b, precision=p).encode(texts)
        ref = vec if ref is None else ref
        cos = (vec * ref).sum(1)
        r10, ridge = fit_scores(man, args.out / f"{b}-{p}", f"text={b},image=torch",
                                f"text={p},image=fp32", args.epochs)
        r10, ridge = r10["text->image"], ridge["text->image"]
        rows.append((b, p, r10, ridge))
        print(f"{b}-{p}: captions {len(texts)} cosine min {cos.min():.5f} mean {cos.mean():.5f}"
              f" | text->image R@10 infonce {100 * r10:.2f} ridge {100 * ridge:.2f}", flush=True)
    base = rows[0]
    for b, p, r10, ridge in rows[1:]:
        print(f"{b}-{p}: R@10 change infonce {100 * (r10 - base[2]):+.2f} ridge "
              f"{100 * (ridge - base[3]):+.2f} points")


if __name__ == "__main__":
    main()
