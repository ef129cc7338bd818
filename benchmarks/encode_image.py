"""Image encoding throughput: polymodal's ``efficientnet-lite0`` vs a naive per-image loop.

The naive loop is what one writes first: for each file, decode, resize to 224, normalise, run
the (unmodified) PyTorch fp32 model on a batch of one, pool. Ours: the encoder as configured
(default: its measured default backend and resolution; ``--backend/--precision/--image-size``
pick another): decode + resize in ``prepare``, then the chosen backend on the BatchNorm-folded
model. Same files; the two runs alternate in one process; prints images/s for both, the min /
mean cosine between the two sets of features, and ``ratio N.NNx`` (median) as the last line.

    flock /tmp/mv/bench.lock .venv/bin/python benchmarks/encode_image.py [--data ../shared/data]
        [--n 400] [--repeats 2] [--backend onnx --precision fp32] [--image-size 224|native]
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


def clipart_paths(data: Path, n: int) -> list[Path]:
    """``n`` openclipart drawings spread over the whole collection (distinct source SVGs)."""
    rows, seen = [], set()
    with (data / "openclipart" / "captions.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r["sha1"] not in seen:
                seen.add(r["sha1"])
                rows.append(r)
    step = max(1, len(rows) // n)
    return [data / "openclipart" / r["image"] for r in rows[::step][:n]]


def synthetic_paths(n: int, folder: Path) -> list[Path]:
    """Random 128x128 PNGs (when the real data is absent)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"img_{i}.png"
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def naive_loop(model, paths: list[Path], size: int):
    """Decode, preprocess and run the model one image at a time."""
    import numpy as np
    import torch
    from PIL import Image

    from polymodal.data.loaders import load_image

    out = []
    with torch.no_grad():
        for p in paths:
            im = load_image(p).resize((size, size), Image.Resampling.BILINEAR)
            x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float()
            x = ((x - 127.0) / 128.0).unsqueeze(0)
            out.append(model.extract_features(x).mean(dim=(2, 3)))
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--image-size", default=None, help="224, native, ... (default: the encoder's)")
    args = ap.parse_args()

    import torch

    from polymodal.features.encoders.image import (EfficientNetLite0Encoder, build_efficientnet_lite0,
                                          efficientnet_lite0_weights)

    tmp = tempfile.TemporaryDirectory()
    if (args.data / "openclipart" / "captions.jsonl").is_file():
        paths, source = clipart_paths(args.data, args.n), "openclipart"
    else:
        paths, source = synthetic_paths(args.n, Path(tmp.name)), "synthetic"
    size = {} if args.image_size is None else {"image_size": args.image_size}
    cache = tempfile.TemporaryDirectory()
    ours = EfficientNetLite0Encoder(backend=args.backend, precision=args.precision,
                                    cache_dir=cache.name, **size)
    plain = build_efficientnet_lite0(efficientnet_lite0_weights(), 224)
    print(f"{len(paths)} images ({source}); torch threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    print(f"ours: {ours.id}")
    naive_loop(plain, paths[:4], 224)  # warm-up
    ours.encode(paths[: ours.batch_size])

    naive_rates, our_rates, ratios = [], [], []
    for rep in range(args.repeats):
        t = time.perf_counter()
        ref = naive_loop(plain, paths, 224)
        t_naive = time.perf_counter() - t
        t = time.perf_counter()
        feats = ours.encode(paths)
        t_ours = time.perf_counter() - t
        naive_rates.append(len(paths) / t_naive)
        our_rates.append(len(paths) / t_ours)
        ratios.append(t_naive / t_ours)
        print(f"run {rep + 1}: naive per-image loop {naive_rates[-1]:.1f} img/s | "
              f"polymodal efficientnet-lite0 {our_rates[-1]:.1f} img/s | "
              f"ratio {ratios[-1]:.2f}x")
    cos = torch.nn.functional.cosine_similarity(feats, ref)
    print(f"cosine ours vs naive: min {cos.min().item():.6f} mean {cos.mean().item():.6f}")
    print(f"median: naive {statistics.median(naive_rates):.1f} img/s, ours "
          f"{statistics.median(our_rates):.1f} img/s")
    tmp.cleanup()
    cache.cleanup()
    print(f"ratio {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
