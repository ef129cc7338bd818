"""Image encoding through the whole pipeline (`encode_manifest`, fresh cache each run) where
decoding costs something: camera-sized photos, or any folder of images.

Three settings of the same ``efficientnet-lite0`` encoder (its default backend), alternating
in one process, each on a new empty cache:

* ``ref``: the path before JPEG drafting and decode processes: full JPEG decode, decoding
  threads (``jpeg_draft=False``, ``decode="threads"``);
* ``threads``: JPEGs decoded at a reduced DCT scale (``jpeg_draft=True``, the default), threads;
* ``processes``: the same in ``--workers`` decode processes (``decode="processes"``).

Prints images/s per setting and run, the cosine between the drafted and the full-decode vectors
(min / mean, per format), and ``ratio N.NNx`` (median images/s of the faster new setting over
``ref``) as the last line.

Photos: the wallpapers of Debian's ``plasma-workspace-wallpapers`` (39 JPEGs, 33 PNGs, 2560x1600
to 5120x2880) and ``gnome-backgrounds`` (WebP) are a public, real set:

    apt-get download plasma-workspace-wallpapers gnome-backgrounds
    for d in *.deb; do dpkg -x "$d" wallpapers; done
    .venv/bin/python benchmarks/encode_photos.py --images wallpapers [--formats jpg]
    .venv/bin/python benchmarks/encode_photos.py --openclipart ../shared/data --n 400
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

SUFFIXES = {"jpg": (".jpg", ".jpeg"), "png": (".png",), "webp": (".webp",)}


def image_paths(args: argparse.Namespace) -> list[Path]:
    if args.openclipart:
        from encode_image import clipart_paths

        return [p.resolve() for p in clipart_paths(Path(args.openclipart), args.n)]
    want = tuple(s for f in args.formats.split(",") for s in SUFFIXES[f.strip()])
    paths = sorted(p.resolve() for p in Path(args.images).rglob("*")
                   if p.is_file() and not p.is_symlink() and p.suffix.lower() in want)
    return paths[:args.n]


def run(manifest: Path, setting: str, work: Path):
    from polymodal.features.encode import encode_manifest
    from polymodal.features.encoders.image import EfficientNetLite0Encoder

    enc = EfficientNetLite0Encoder(jpeg_draft=setting != "ref")
    out = Path(tempfile.mkdtemp(dir=work))
    t0 = time.perf_counter()
    res = encode_manifest(manifest, out / "feat", encoders={"image": enc}, cache_dir=out / "c",
                          progress=False, workers=2, modalities=["image"],
                          decode="processes" if setting == "processes" else "threads")
    dt = time.perf_counter() - t0
    import numpy as np

    return res.rows / dt, np.load(out / "feat" / "image.npy").astype(np.float64)  # stored fp16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="a folder of images (searched recursively)")
    src.add_argument("--openclipart", metavar="DATA", help="../shared/data: openclipart PNGs")
    ap.add_argument("--formats", default="jpg,png,webp", help="with --images: jpg,png,webp")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    paths = image_paths(args)
    if not paths:
        sys.exit("no images found")
    fmts = [Image.open(p).format for p in paths]
    work = Path(tempfile.mkdtemp(prefix="encode_photos-"))
    manifest = work / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"id": i, "image": str(p)}) + "\n"
                                for i, p in enumerate(paths)), encoding="utf-8")
    print(f"{len(paths)} images ({', '.join(f'{f} {fmts.count(f)}' for f in sorted(set(fmts)))}); "
          f"cpus {os.cpu_count()}, capability {torch.backends.cpu.get_cpu_capability()}, "
          f"load {os.getloadavg()[0]:.2f}")
    settings = ("ref", "threads", "processes")
    rates: dict[str, list[float]] = {s: [] for s in settings}
    vecs = {}
    for r in range(args.repeats):
        line = []
        for s in settings:
            rate, vecs[s] = run(manifest, s, work)
            rates[s].append(rate)
            line.append(f"{s} {rate:.1f} img/s")
        print(f"run {r + 1}: " + " | ".join(line), flush=True)
    a, b = vecs["ref"], vecs["threads"]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    for f in sorted(set(fmts)):
        m = np.array([x == f for x in fmts])
        print(f"cosine drafted vs full decode, {f}: min {cos[m].min():.4f} mean "
              f"{cos[m].mean():.4f} (n={int(m.sum())})")
    same = float(np.abs(vecs["threads"] - vecs["processes"]).max())
    print(f"threads vs processes: max abs difference {same:g}")
    med = {s: statistics.median(v) for s, v in rates.items()}
    best = max(("threads", "processes"), key=med.get)
    print("median: " + ", ".join(f"{s} {v:.1f} img/s" for s, v in med.items())
          + f"; load {os.getloadavg()[0]:.2f}")
    print(f"best new setting: {best}")
    print(f"ratio {med[best] / med['ref']:.2f}x")


if __name__ == "__main__":
    main()
