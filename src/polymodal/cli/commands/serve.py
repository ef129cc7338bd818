"""Commands that use a trained run: ``search``, ``predict``, ``caption``, ``generate``, ``serve``,
``report``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from polymodal.cli.commands.common import pairs, print_row_report
from polymodal.core.errors import UsageError


def cmd_search(a: argparse.Namespace) -> int:
    from polymodal.tasks.retrieval.predict import hits_grid, hits_json, load_run, search_run

    if a.queries:
        return _search_queries(a)
    run = load_run(a.run)
    hits = search_run(run, text=a.text, image=a.image, audio=a.audio, k=a.k)
    if a.json:
        print(hits_json(hits))
    else:
        for h in hits:
            at = "" if h.start_s is None else f"  @ {h.start_s:.1f} s"
            print(f"{h.rank:>3}  {h.score:.4f}  {h.row_id}  {h.path or h.text or ''}{at}")
    if a.grid:
        print(f"grid: {hits_grid(hits, a.grid, a.text or a.image or a.audio)}", file=sys.stderr)
    return 0


def _search_queries(a: argparse.Namespace) -> int:
    """``search RUN --queries FILE``: one query per line, all answered in one batch."""
    from polymodal.tasks.retrieval.predict import Retriever, read_queries

    if any(v is not None for v in (a.text, a.image, a.audio, a.grid)):
        raise UsageError("--queries takes no --text, --image, --audio or --grid")
    model = Retriever.load(a.run)
    model.check_k(a.k)
    queries = read_queries(a.queries, model.config.query)
    for n, (q, hits) in enumerate(zip(queries, model.search(queries, k=a.k)), 1):
        if a.json:
            print(json.dumps({"query": q, "hits": [h.to_dict() for h in hits]},
                             ensure_ascii=False))
            continue
        print(f"query {n}: {q}")
        for h in hits:
            print(f"{h.rank:>5}  {h.score:.4f}  {h.row_id}  {h.path or h.text or ''}")
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from polymodal.tasks.classify.predict import Classifier, skipped_path, write_predictions_csv

    if Path(a.out).is_dir():
        raise UsageError(f"--out {a.out} is a folder; give the CSV file to write")
    model = Classifier.load(a.run)
    res = model.predict_manifest(a.manifest, columns=pairs(a.column, "--column"),
                                 cache_dir=a.cache, progress=not a.quiet)
    out = write_predictions_csv(a.out, model, res)
    print(f"predicted: {len(res.ids)} rows  written to: {out}")
    print_row_report(res.warnings, res.skipped, skipped_path(out))
    return 0


def cmd_caption(a: argparse.Namespace) -> int:
    from polymodal.tasks.caption.predict import Captioner

    captions = Captioner.load(a.run).caption(list(a.images), beam=a.beam)  # encoder id checked
    for path, cap in zip(a.images, captions):
        print(f"{path}\t{cap}")
    return 0


def cmd_generate(a: argparse.Namespace) -> int:
    from polymodal.tasks.generate.predict import ImageGenerator

    path = ImageGenerator.load(a.run).grid(a.out, text=a.text, audio=a.audio, n=a.n,
                                           seed=a.seed)  # encoder id checked
    print(f"grid: {path}")
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from polymodal.serve.app import serve

    serve(a.run, host=a.host, port=a.port, max_upload_mb=a.max_upload_mb,
          max_batch=a.max_batch, allow_hosts=a.allow_host)
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from polymodal.tasks.retrieval.export import export_run

    doc = export_run(a.run, a.out, a.format, int8=a.int8)
    c = doc["check"]
    if c.get("queries"):
        print(f"cosine to the torch run: min {c['cosine_min']:.4f} mean {c['cosine_mean']:.4f}; "
              f"same top-{c['k']} on {100 * c['same_top_k']:.0f}% of {c['queries']} queries "
              f"({100 * c['same_order']:.0f}% in the same order)")
    print(f"exported: {a.out}")
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from polymodal.report.retrieval import write_report

    print(f"report: {write_report(a.path, a.out)}")
    return 0
