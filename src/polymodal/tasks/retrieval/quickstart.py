"""The main job on the bundled sample: encode (cached), align, index, evaluate against the
baselines, print the table and a few example queries with their hits."""
from __future__ import annotations

from pathlib import Path

from polymodal.tasks.retrieval.config import RetrievalConfig

from polymodal.tasks.retrieval.fit import fit_retrieval
from polymodal.tasks.retrieval.predict import hits_grid, load_run, search_run
from polymodal.train.config import TrainConfig

EXAMPLE_QUERIES = ("a mobile phone", "a cat", "the flag of a country", "a guitar", "a red apple")


def format_table(result: dict, method: str) -> str:
    """Metrics of a run and its baselines, one line per method and direction."""
    rows = [(method, result["metrics"])] + list(result.get("baselines", {}).items())
    head = f"{'method':<10} {'direction':<14} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MedR':>7} " \
           f"{'mAP':>6}"
    lines = [head, "-" * len(head)]
    for name, by_dir in rows:
        for d, m in by_dir.items():
            cells = [f"{m[k]:>{w}.{p}f}" if k in m else f"{'-':>{w}}"
                     for k, w, p in (("R@1", 6, 3), ("R@5", 6, 3), ("R@10", 6, 3), ("MedR", 7, 1),
                                     ("mAP", 6, 3))]
            lines.append(f"{name:<10} {d:<14} " + " ".join(cells))
    return "\n".join(lines)


def quickstart(out: str | Path = "runs/quickstart", epochs: int = 30, progress: bool = True,
               queries: tuple[str, ...] = EXAMPLE_QUERIES) -> dict:
    """Run text->image retrieval on the bundled OpenClipart sample and print what it found."""
    from polymodal.data.datasets import sample_path

    out = Path(out)
    manifest = sample_path("openclipart")
    print(f"[1/4] dataset: bundled OpenClipart sample ({manifest})")
    cfg = RetrievalConfig(manifest=str(manifest), query="text", target="image", loss="infonce",
                          relevance="caption_group", head="mlp", dim=256, batch_size=128,
                          train=TrainConfig(epochs=epochs, patience=8, progress=progress))
    print("[2/4] encode (cached) + align text and image with InfoNCE")
    result = fit_retrieval(cfg, out, progress=progress)
    print(f"[3/4] test split: {result['n_test_queries']} captions x {result['n_test_targets']} "
          f"drawings (drawings with identical captions count as correct)")
    print(format_table(result, "infonce"))
    print("[4/4] example queries (top 3 over the whole sample):")
    run = load_run(out)
    for q in queries:
        hits = search_run(run, text=q, k=3)
        print(f"  '{q}': " + "; ".join(f"{h.row_id} ({h.score:.2f})" for h in hits))
    grid = hits_grid(search_run(run, text=queries[0], k=5), out / "example_hits.png", queries[0])
    print(f"run folder: {out}   picture of hits: {grid}")
    return result
