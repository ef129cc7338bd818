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
