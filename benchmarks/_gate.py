"""What the two backend quality gates share (`text_backend_gate.py`, `image_backend_gate.py`):
their options, the OpenClipart set they build once, and the InfoNCE fit scored on it."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def gate_parser(doc: str, out: str, example: str) -> argparse.ArgumentParser:
    """The options of a gate script (``--data --limit --out --epochs --only``)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / out)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--only", default="", help="comma list of settings besides torch-fp32 (the "
                    f"reference, always first), e.g. {example} (default: all)")
    return ap


def wanted(settings: tuple, only: str) -> list[tuple[str, str]]:
    """``settings`` (reference first) kept by ``--only``."""
    keep = {x.strip() for x in only.split(",") if x.strip()}
    return [s for s in settings if not keep or s == settings[0] or f"{s[0]}-{s[1]}" in keep]


def clipart_manifest(args: argparse.Namespace) -> Path:
    """The OpenClipart manifest under ``args.out`` (built on the first run); prints the load."""
    import torch

    from polymodal.data.datasets import build_dataset

    print(f"load {os.getloadavg()[0]:.2f}, cpu {torch.backends.cpu.get_cpu_capability()}")
    man = args.out / "data" / "manifest.jsonl"
    if not man.is_file():
        man = build_dataset("openclipart", args.data / "openclipart", args.out / "data",
                            limit=args.limit, progress=False)
    return man


def fit_scores(man: Path, out: Path, backend: str, precision: str, epochs: int
               ) -> tuple[dict, dict]:
    """An InfoNCE retrieval fit (seed 0) with the given per-modality ``backend`` /
    ``precision`` settings: ``(R@10 per direction, ridge baseline R@10 per direction)``."""
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import fit_retrieval
    from polymodal.train.config import TrainConfig

    cfg = RetrievalConfig(manifest=str(man), relevance="caption_group", batch_size=128,
                          loss="infonce", backend=backend, encoder_precision=precision,
                          train=TrainConfig(epochs=epochs, patience=5, seed=0, progress=False))
    res = fit_retrieval(cfg, out, progress=False)
    dirs = ("text->image", "image->text")
    return ({d: res["metrics"][d]["R@10"] for d in dirs},
            {d: res["baselines"]["ridge"][d]["R@10"] for d in dirs})
