"""The command line: the only argument parser. Each command calls a plain Python function.

Errors caused by input (`PolymodalError`) print one line ``error: …`` and exit with code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from polymodal.errors import PolymodalError, UsageError


def _pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    """Parse repeated ``key=value`` options."""
    out: dict[str, str] = {}
    for v in values or []:
        if "=" not in v:
            raise UsageError(f"{flag} expects KEY=VALUE, got '{v}'")
        k, val = v.split("=", 1)
        out[k.strip()] = val.strip()
    return out


def _print_problems(problems, limit: int = 20) -> None:
    for p in problems[:limit]:
        print(f"  row {p.row if p.row is not None else '-'}  {p.column or '-'}: {p.reason}")
    if len(problems) > limit:
        print(f"  … and {len(problems) - limit} more")


# ---------------------------------------------------------------- commands
def cmd_encode(a: argparse.Namespace) -> int:
    from polymodal.tasks.encode import encode_manifest

    res = encode_manifest(a.manifest, a.out, encoders=_pairs(a.encoder, "--encoder"),
                          cache_dir=a.cache, batch_size=a.batch_size, workers=a.workers,
                          progress=not a.quiet, columns=_pairs(a.column, "--column"))
    print(res.table())
    print(f"rows: {res.rows}  written to: {res.out}")
    if res.warnings:
        print(f"warnings: {len(res.warnings)} cells treated as missing")
        _print_problems(res.warnings, 5)
    if res.skipped:
        print(f"skipped: {len(res.skipped)} (details in {res.out / 'skipped.jsonl'})")
        _print_problems(res.skipped, 10)
    return 0


def cmd_validate(a: argparse.Namespace) -> int:
    from polymodal.data.validate import validate_manifest

    report = validate_manifest(a.manifest, columns=_pairs(a.column, "--column"),
                               check_media=not a.no_media, progress=not a.quiet)
    if a.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(report.table())
    return 1 if report.errors else 0


def cmd_datasets_list(a: argparse.Namespace) -> int:
    from polymodal.data.datasets import list_datasets

    for name, desc in list_datasets():
        print(f"{name:<16} {desc}")
    return 0


def cmd_datasets_build(a: argparse.Namespace) -> int:
    from polymodal.data.datasets import build_dataset

    opts = {k: _coerce(v) for k, v in _pairs(a.option, "--option").items()}
    if a.limit is not None:
        opts["limit"] = a.limit
    path = build_dataset(a.name, Path(a.source), Path(a.out), seed=a.seed,
                         progress=not a.quiet, **opts)
    print(f"manifest: {path}")
    return 0


def cmd_fit_retrieval(a: argparse.Namespace) -> int:
    from polymodal.tasks.quickstart import format_table
    from polymodal.tasks.retrieval import RetrievalConfig, fit_retrieval

    data = RetrievalConfig.from_yaml(a.config).model_dump() if a.config else {}
    over = {k: getattr(a, k) for k in ("manifest", "query", "target", "loss", "head", "dim",
                                        "batch_size", "relevance", "index") if getattr(a, k) is not None}
    if a.encoder:
        over["encoders"] = _pairs(a.encoder, "--encoder")
    if a.column:
        over["columns"] = _pairs(a.column, "--column")
    train = dict(data.get("train", {}))
    train.update({k: getattr(a, k) for k in ("epochs", "lr", "seed", "patience")
                  if getattr(a, k) is not None})
    train["progress"] = not a.quiet
    data.update(over)
    data["train"] = train
    if "manifest" not in data:
        raise UsageError("give --manifest (or a --config with 'manifest:')")
    try:
        cfg = RetrievalConfig.model_validate(data)
    except Exception as e:  # pydantic.ValidationError
        raise UsageError(f"invalid configuration: {e}") from None
    res = fit_retrieval(cfg, a.out, resume=a.resume, progress=not a.quiet)
    print(format_table(res, cfg.loss))
    print(f"run folder: {a.out}")
    return 0


def cmd_search(a: argparse.Namespace) -> int:
    from polymodal.tasks.search import hits_grid, hits_json, load_run, search_run

    run = load_run(a.run)
    hits = search_run(run, text=a.text, image=a.image, audio=a.audio, k=a.k)
    if a.json:
        print(hits_json(hits))
    else:
        for h in hits:
            print(f"{h.rank:>3}  {h.score:.4f}  {h.row_id}  {h.path or h.text or ''}")
    if a.grid:
        print(f"grid: {hits_grid(hits, a.grid, a.text or a.image or a.audio)}", file=sys.stderr)
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from polymodal.tasks.search import eval_run, load_run

    res = eval_run(load_run(a.run), a.manifest, None if a.split == "all" else a.split,
                   progress=not a.quiet)
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        for d, m in res.items():
            print(f"{d:<14} " + "  ".join(f"{k}={v:.3f}" for k, v in m.items()))
    return 0


def cmd_quickstart(a: argparse.Namespace) -> int:
    from polymodal.tasks.quickstart import quickstart

    quickstart(a.out, epochs=a.epochs, progress=not a.quiet)
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from polymodal.serve.app import serve

    serve(a.run, host=a.host, port=a.port, max_upload_mb=a.max_upload_mb)
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from polymodal.eval.report import write_report

    print(f"report: {write_report(a.path, a.out)}")
    return 0


def cmd_datasets_coco(a: argparse.Namespace) -> int:
    from polymodal.data.coco import coco_to_manifest

    print(f"manifest: {coco_to_manifest(a.captions, a.images, a.out, split=a.split)}")
    return 0


def _coerce(v: str):
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polymodal", description="Learn from image, text and audio "
                                "together: encode, align, fuse, retrieve, generate, evaluate.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn: Callable, help: str, parent=sub) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help)
        sp.set_defaults(func=fn)
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        return sp

    col_help = "map a column to a role, e.g. --column text=caption (repeatable)"
    e = add("encode", cmd_encode, "encode a manifest's files and texts into cached features")
    e.add_argument("manifest", help="CSV / JSONL / Parquet manifest")
    e.add_argument("--out", required=True, help="output folder for the feature matrices")
    e.add_argument("--encoder", action="append", metavar="MODALITY=NAME",
                   help="e.g. image=efficientnet-lite0, text=minilm, audio=whisper-tiny, "
                        "text=hf:<model> (repeatable; default: offline defaults)")
    e.add_argument("--column", action="append", metavar="ROLE=COLUMN", help=col_help)
    e.add_argument("--cache", default=None, help="feature cache folder (default $POLYMODAL_CACHE "
                   "or ~/.cache/polymodal)")
    e.add_argument("--batch-size", type=int, default=None)
    e.add_argument("--workers", type=int, default=2, help="decoding threads")

    v = add("validate", cmd_validate, "check every row of a manifest; exit 1 if any problem")
    v.add_argument("manifest")
    v.add_argument("--column", action="append", metavar="ROLE=COLUMN", help=col_help)
    v.add_argument("--no-media", action="store_true", help="do not decode media files")
    v.add_argument("--json", action="store_true", help="print the report as JSON")

    d = sub.add_parser("datasets", help="built-in dataset builders")
    dsub = d.add_subparsers(dest="datasets_command", metavar="ACTION")
    add("list", cmd_datasets_list, "list the built-in datasets", dsub)
    b = add("build", cmd_datasets_build, "write a manifest + files from a source folder", dsub)
    b.add_argument("name")
    b.add_argument("--source", required=True, help="source folder (e.g. ../shared/data/fsdd)")
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--limit", type=int, default=None, help="at most this many rows")
    b.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="builder option, e.g. hard=true snr_db=0")
    q = add("quickstart", cmd_quickstart, "the main job on the bundled sample, end to end")
    q.add_argument("--out", default="runs/quickstart")
    q.add_argument("--epochs", type=int, default=30)

    f = sub.add_parser("fit", help="train a model (retrieval, …)")
    fsub = f.add_subparsers(dest="fit_command", metavar="TASK")
    fr = add("retrieval", cmd_fit_retrieval, "align two modalities and index the targets", fsub)
    fr.add_argument("--config", help="YAML with the same keys as the options below")
    fr.add_argument("--manifest")
    fr.add_argument("--query", choices=["text", "image", "audio"])
    fr.add_argument("--target", choices=["text", "image", "audio"])
    fr.add_argument("--loss", help="infonce, siglip, triplet, triplet-semihard, contrastive, mse, "
                    "cosine, cca")
    fr.add_argument("--head", choices=["linear", "mlp"])
    fr.add_argument("--dim", type=int)
    fr.add_argument("--batch-size", type=int)
    fr.add_argument("--epochs", type=int)
    fr.add_argument("--lr", type=float)
    fr.add_argument("--patience", type=int)
    fr.add_argument("--seed", type=int)
    fr.add_argument("--relevance", help="'row' (default) or a column whose equal values all count "
                    "as correct, e.g. label or caption_group")
    fr.add_argument("--index", help="auto, exact, hnsw or ivfpq")
    fr.add_argument("--encoder", action="append", metavar="MODALITY=NAME")
    fr.add_argument("--column", action="append", metavar="ROLE=COLUMN", help=col_help)
    fr.add_argument("--out", required=True)
    fr.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")

    s = add("search", cmd_search, "search a run's index with a text, image or audio query")
    s.add_argument("run")
    s.add_argument("--text")
    s.add_argument("--image")
    s.add_argument("--audio")
    s.add_argument("-k", type=int, default=5)
    s.add_argument("--json", action="store_true")
    s.add_argument("--grid", help="write a picture of the hits to this PNG")

    ev = add("eval", cmd_eval, "evaluate a run on a manifest split")
    ev.add_argument("run")
    ev.add_argument("--manifest", default=None, help="default: the run's own manifest")
    ev.add_argument("--split", default="test", help="train, val, test or all")
    ev.add_argument("--json", action="store_true")

    sv = add("serve", cmd_serve, "serve a run: search API + web page")
    sv.add_argument("run")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--max-upload-mb", type=float, default=10.0)

    rp = add("report", cmd_report, "write a stand-alone HTML report for a run or compare folder")
    rp.add_argument("path", help="run folder or compare folder")
    rp.add_argument("--out", default="report.html")
    c = add("coco", cmd_datasets_coco, "convert COCO captions JSON to a manifest (one row per "
            "image, all captions kept)", dsub)
    c.add_argument("captions", help="captions_*.json")
    c.add_argument("--images", required=True, help="folder with the images")
    c.add_argument("--out", required=True, help="manifest path (.jsonl)")
    c.add_argument("--split", default=None, help="split value for every row (train/val/test)")
    return p


def _version() -> str:
    from polymodal import __version__

    return f"polymodal {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    a = parser.parse_args(argv)
    if not getattr(a, "func", None):
        parser.print_help()
        return 2
    try:
        return int(a.func(a) or 0)
    except PolymodalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
