"""MNIST test set (10,000 handwritten digits) from the original IDX files, written as PNGs.

Source: a folder with ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``. The IDX
format is parsed here with numpy + gzip (magic numbers and sizes are checked).
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from polymodal.data.datasets._common import (DIGIT_WORDS, OutputFolder, bar, check_limit,
                                             find_source, say, split_counts)
from polymodal.core.errors import DataError, UsageError

IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"
EXPECTED = f"{IMAGES} and {LABELS} (MNIST test set, IDX format)"
IMAGE_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
LABEL_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension


def find_mnist(source: str | Path) -> Path:
    """The MNIST folder under ``source`` (itself or ``source/mnist``), or a clear error."""
    return find_source(source, "mnist", "mnist", [IMAGES, LABELS], EXPECTED)


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Read a gzipped IDX file of unsigned bytes; checks the magic number and the size."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise DataError("file not found", file=str(path)) from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"not a readable gzip file ({e}); the download may be corrupt",
                        file=str(path)) from None
    if len(raw) < 8:
        raise DataError("file too short to be an IDX file", file=str(path))
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"bad IDX magic number {found} (expected {magic}); not an MNIST "
                        f"{'image' if magic == IMAGE_MAGIC else 'label'} file or corrupt",
                        file=str(path))
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims))
    if len(raw) != header + size:
        raise DataError(f"IDX size mismatch: header says {dims} ({size} bytes) but the file has "
                        f"{len(raw) - header} data bytes; the file is truncated or corrupt",
                        file=str(path))
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 from an MNIST folder."""
    folder = find_mnist(folder)
    images = read_idx(folder / IMAGES, IMAGE_MAGIC)
    labels = read_idx(folder / LABELS, LABEL_MAGIC)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"unexpected IDX shapes {images.shape} / {labels.shape}",
                        file=str(folder))
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images but {len(labels)} labels", file=str(folder))
    if labels.size and labels.max() > 9:
        raise DataError(f"label {int(labels.max())} out of range 0-9", file=str(folder / LABELS))
    return images, labels


def write_png(array: np.ndarray, path: Path) -> None:
    """Save a uint8 grayscale array as PNG."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="L").save(path,
                                                                                optimize=True)


def random_split(n: int, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
                 ) -> list[str]:
    """``n`` split names (train/val/test by ``fractions``), shuffled deterministically."""
    if abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise UsageError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    n_val, n_test = round(n * fractions[1]), round(n * fractions[2])
    names = np.array(["train"] * (n - n_val - n_test) + ["val"] * n_val + ["test"] * n_test)
    return list(names[np.random.default_rng(seed).permutation(n)])


def build_mnist(source: Path, out: Path, seed: int = 0, progress: bool = True,
                limit: int | None = None) -> Path:
    """Write MNIST test images as 28x28 PNGs with label, text and an 80/10/10 split (``seed``).
    ``limit`` keeps the first N images."""
    limit = check_limit(limit)
    folder = find_mnist(source)
    images, labels = load_mnist(folder)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    splits = random_split(len(images), seed)
    with OutputFolder(out) as od:
        img_dir = od.stage("images")
        rows = []
        for i in bar(range(len(images)), progress, "mnist"):
            name = f"mnist_{i:05d}.png"
            write_png(images[i], img_dir / name)
            d = int(labels[i])
            rows.append({"id": f"mnist_{i:05d}", "image": f"images/{name}",
                         "text": f"a handwritten digit {DIGIT_WORDS[d]}", "label": d,
                         "split": splits[i], "mnist_index": i})
        counts = split_counts(rows)
        info = {"name": "mnist", "source": str(folder), "seed": seed, "rows": len(rows),
                "splits": counts, "media_dirs": ["images"]}
        path = od.commit(rows, info)
    say(f"mnist: {len(rows)} images -> {path} (train {counts['train']}, val {counts['val']}, "
        f"test {counts['test']})", progress)
    return path
