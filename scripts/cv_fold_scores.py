"""CV scores of ridge and CCA (baseline settings) with row folds vs folds of the split's grouping
(docs/RESULTS.md §10, "Grouped CV folds"): the selection's own `cv_scores`, on a set's subset
manifest and feature folder as `scripts/selection_table.py` writes them.

    python scripts/cv_fold_scores.py --manifest D/fsdd/subset-300-s0.jsonl \
        --features RUNS/fsdd/300/feat-300-s0 --query audio --target text --relevance label --seed 0
"""
from __future__ import annotations

import argparse
import sys

from polymodal.data.manifest import read_manifest
from polymodal.features.cache.features import FeatureSet
from polymodal.tasks.retrieval import closed_form
from polymodal.tasks.retrieval.data import load_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("--manifest", "--features", "--query", "--target", "--relevance"):
        ap.add_argument(name, required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    manifest = read_manifest(a.manifest)
    data = load_pairs(FeatureSet.load(a.features), manifest, a.query, a.target, a.relevance)
    groups = closed_form.split_groups(manifest, data)
    if groups is None:
        sys.exit(f"{a.manifest}: its split is not grouped by any column")
    base = {"ridge": {"alpha": 1.0}, "cca": {"components": closed_form.BASELINE_CCA_K, "reg": 1e-3}}
    for name, setting in base.items():
        rows = closed_form.cv_scores(name, [setting], data, a.seed)[0][0].mean()
        grouped = closed_form.cv_scores(name, [setting], data, a.seed, groups)[0][0].mean()
        print(f"{name}: row folds {rows:.4f}, folds by {groups[0]} {grouped:.4f}")


if __name__ == "__main__":
    main()
