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

from polymodal.core.errors import PolymodalError, UsageError


def _pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    """Parse repeated ``key=value`` options (none given: empty)."""
    from polymodal.cli.options import parse_pairs

    return parse_pairs(values or [], flag)


def _print_row_report(warnings, skipped, details: Path) -> None:
    """What a batch job did with bad cells (warnings) and bad rows (skipped, listed in
    ``details``), the first few of each."""
    if warnings:
        print(f"warnings: {len(warnings)} cells treated as missing")
        _print_problems(warnings, 5)
    if skipped:
        print(f"skipped: {len(skipped)} (details in {details})")
        _print_problems(skipped, 10)


def _print_problems(problems, limit: int = 20) -> None:
    for p in problems[:limit]:
        print(f"  row {p.row if p.row is not None else '-'}  {p.column or '-'}: {p.reason}")
    if len(problems) > limit:
        print(f"  … and {len(problems) - limit} more")


# ---------------------------------------------------------------- commands
def cmd_encode(a: argparse.Namespace) -> int:
    from polymodal.features.encode import encode_manifest

    res = encode_manifest(a.manifest, a.out, encoders=_pairs(a.encoder, "--encoder"),
                          cache_dir=a.cache, batch_size=a.batch_size, workers=a.workers,
                          progress=not a.quiet, columns=_pairs(a.column, "--column"))
    print(res.table())
    print(f"rows: {res.rows}  written to: {res.out}")
    _print_row_report(res.warnings, res.skipped, res.out / "skipped.jsonl")
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


# `polymodal list KIND`: the registry each kind names ("module:attribute", imported lazily)
LISTS = {"encoders": "polymodal.features.encoders.registry:ENCODERS",
         "losses": "polymodal.objectives.registry:ALIGNMENTS",
         "fusions": "polymodal.nn.registry:FUSIONS",
         "heads": "polymodal.nn.registry:HEADS",
         "decoders": "polymodal.nn.registry:CAPTION_DECODERS",
         "generators": "polymodal.nn.registry:GENERATORS",
         "datasets": "polymodal.data.datasets:DATASETS"}


def cmd_list(a: argparse.Namespace) -> int:
    import importlib

    module, _, attr = LISTS[a.kind].partition(":")
    registry = getattr(importlib.import_module(module), attr)
    rows = registry.rows()
    width = max(len(name) for name, _, _ in rows) + 2
    for name, desc, meta in rows:
        meta.pop("options", None)  # dataset option help: shown by --options
        extra = "  ".join(f"{k}={v}" for k, v in meta.items())
        print(f"{name:<{width}}{desc}" + (f"  [{extra}]" if extra else ""))
        if a.options:
            print(f"{'':<{width}}options: {', '.join(registry.options(name)) or '(none)'}")
    return 0


def cmd_datasets_build(a: argparse.Namespace) -> int:
    from polymodal.data.datasets import build_dataset

    from polymodal.cli.options import coerce_value

    opts = {k: coerce_value(v) for k, v in _pairs(a.option, "--option").items()}
    for k in ("seed", "source", "out", "progress"):
        if k in opts:
            raise UsageError(f"--option {k}=…: use --{k} instead" if k != "progress"
                             else "--option progress=…: use -q for no progress bars")
    if a.limit is not None:
        opts["limit"] = a.limit
    path = build_dataset(a.name, Path(a.source), Path(a.out), seed=a.seed,
                         progress=not a.quiet, **opts)
    print(f"manifest: {path}")
    return 0


def _auto_report(a: argparse.Namespace, folder: str | Path | None = None,
                 label: str = "report") -> None:
    """Write FOLDER/report.html (default: ``a.out``) after a task unless --no-report; never
    fails the command. Tasks never import reports: the CLI asks for them."""
    if getattr(a, "no_report", False):
        return
    from polymodal.report import auto_report

    report = auto_report(folder or a.out)
    if report:
        print(f"{label}: {report}")


def cmd_fit_retrieval(a: argparse.Namespace) -> int:
    from polymodal.cli.options import config_from_args
    from polymodal.tasks.retrieval.config import RetrievalConfig
    from polymodal.tasks.retrieval.fit import fit_retrieval
    from polymodal.tasks.retrieval.quickstart import format_table

    cfg = config_from_args(RetrievalConfig, a)
    res = fit_retrieval(cfg, a.out, resume=a.resume, progress=not a.quiet)
    print(format_table(res, cfg.loss))
    print(f"run folder: {a.out}")
    _auto_report(a)
    return 0


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
            print(f"{h.rank:>3}  {h.score:.4f}  {h.row_id}  {h.path or h.text or ''}")
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
    res = model.predict_manifest(a.manifest, columns=_pairs(a.column, "--column"),
                                 cache_dir=a.cache, progress=not a.quiet)
    out = write_predictions_csv(a.out, model, res)
    print(f"predicted: {len(res.ids)} rows  written to: {out}")
    _print_row_report(res.warnings, res.skipped, skipped_path(out))
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from polymodal.tasks.retrieval.predict import eval_run, load_run

    if a.zero_shot:
        return _eval_zero_shot(a)
    res = eval_run(load_run(a.run), a.manifest, None if a.split == "all" else a.split,
                   progress=not a.quiet)
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        for d, m in res.items():
            print(f"{d:<14} " + "  ".join(f"{k}={v:.3f}" for k, v in m.items()))
    return 0


def _eval_zero_shot(a: argparse.Namespace) -> int:
    from polymodal.tasks.retrieval.predict import load_run
    from polymodal.tasks.retrieval.zeroshot import zero_shot_run

    res = zero_shot_run(load_run(a.run), a.zero_shot, a.prompt, a.manifest,
                        None if a.split == "all" else a.split, progress=not a.quiet)
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"zero-shot {res['column']} ({res['split']}): accuracy {res['accuracy']:.3f} on "
              f"{res['n_items']} items, {res['n_classes']} classes (chance {res['chance']:.3f}, "
              f"majority class {res['majority']:.3f}); prompt e.g. '{res['prompts'][0]}'")
    return 0


def cmd_quickstart(a: argparse.Namespace) -> int:
    from polymodal.tasks.retrieval.quickstart import quickstart

    quickstart(a.out, epochs=a.epochs, progress=not a.quiet)
    _auto_report(a, label="report (plots, example queries)")
    print(f"try: polymodal search {a.out} --text \"a blue bird\" -k 5")
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from polymodal.serve.app import serve

    serve(a.run, host=a.host, port=a.port, max_upload_mb=a.max_upload_mb,
          max_batch=a.max_batch, allow_hosts=a.allow_host)
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from polymodal.report.retrieval import write_report

    print(f"report: {write_report(a.path, a.out)}")
    return 0


def cmd_datasets_coco(a: argparse.Namespace) -> int:
    from polymodal.data.coco import coco_to_manifest

    print(f"manifest: {coco_to_manifest(a.captions, a.images, a.out, split=a.split)}")
    return 0


def _classifier_config(a: argparse.Namespace):
    """ClassifierConfig from ``--config`` YAML overridden by the command-line options."""
    from polymodal.cli.options import config_from_args
    from polymodal.tasks.classify.config import ClassifierConfig

    return config_from_args(ClassifierConfig, a)


def cmd_fit_classify(a: argparse.Namespace) -> int:
    from polymodal.tasks.classify.fit import fit_classifier

    res = fit_classifier(_classifier_config(a), a.out, progress=not a.quiet, resume=a.resume)
    m = res["metrics"]
    print(f"{res['method']} ({res['problem']}, target {res['target']}): test " +
          "  ".join(f"{k}={v:.4f}" for k, v in m.items() if isinstance(v, float)))
    print(f"train {res['train_seconds']:.1f} s, {res['params']} parameters, peak memory "
          f"{res['peak_mem_mb']:.1f} MiB; rows train/val/test {res['n_train']}/{res['n_val']}/"
          f"{res['n_test']}, skipped {res['skipped_rows']}")
    print(f"run folder: {a.out}")
    _auto_report(a)
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from polymodal.tasks.classify.compare import compare_methods, format_summary

    res = compare_methods(_classifier_config(a), a.out, methods=a.fusions, seeds=a.seeds,
                          progress=not a.quiet)
    print(format_summary(res["summary"], res["metrics"]))
    print(f"results: {Path(a.out) / 'results.csv'}  summary: {Path(a.out) / 'summary.csv'}  "
          f"report: {Path(a.out) / 'report.html'}")
    _auto_report(a)
    return 0


def cmd_robustness(a: argparse.Namespace) -> int:
    from polymodal.metrics.robustness import parse_levels
    from polymodal.tasks.classify.analysis import format_robustness, robustness

    rows = robustness(a.path, parse_levels(a.missing, "missing"), parse_levels(a.noise, "noise"),
                      out=a.out, split=a.split, seed=a.seed, repeats=a.repeats,
                      progress=not a.quiet)
    print(format_robustness(rows))
    dest = Path(a.out or a.path)
    from polymodal.report.plots import robustness_png

    _plot(lambda: robustness_png(dest, rows))
    if (dest / "compare.json").is_file():  # the compare report shows the new curves
        _auto_report(a, dest)
    print(f"curves: {dest / 'robustness.csv'}  plot: {dest / 'robustness.png'}")
    return 0


def _plot(draw: Callable[[], Path]) -> None:
    """Draw an analysis picture (report layer); without matplotlib say so and go on."""
    try:
        draw()
    except ImportError as e:
        print(f"note: no plot ({e.name or e} is not installed: pip install 'polymodal[report]')",
              file=sys.stderr)


def cmd_explain(a: argparse.Namespace) -> int:
    from polymodal.tasks.classify.analysis import explain_dataset, explain_row, format_explanation

    if a.row is not None:
        res = explain_row(a.run, a.row)
    else:
        res = explain_dataset(a.run, split=a.split, repeats=a.repeats, seed=a.seed)
    print(json.dumps(res, indent=1, default=str) if a.json else format_explanation(res))
    if a.row is None:
        from polymodal.report.plots import importance_png

        _plot(lambda: importance_png(a.run, res))
        print(f"written: {Path(a.run) / 'importance.json'}  {Path(a.run) / 'importance.png'}")
    return 0


# ---------------------------------------------------------------- generation (caption, generate,
# transcribe): commands and their parser block
def _fit_generation(a: argparse.Namespace, task: str) -> int:
    """``fit caption`` / ``fit generate``: config from the options, fit, print the metrics."""
    import importlib

    from polymodal.cli.options import config_from_args

    cls, fit, fmt = {"caption": ("CaptionConfig", "fit_caption", "format_caption_metrics"),
                     "generate": ("GenerateConfig", "fit_generate",
                                  "format_generate_metrics")}[task]
    config = getattr(importlib.import_module(f"polymodal.tasks.{task}.config"), cls)
    module = importlib.import_module(f"polymodal.tasks.{task}.fit")
    res = getattr(module, fit)(config_from_args(config, a), a.out, resume=a.resume,
                               progress=not a.quiet)
    print(getattr(module, fmt)(res))
    print(f"run folder: {a.out}")
    return 0


def cmd_fit_caption(a: argparse.Namespace) -> int:
    return _fit_generation(a, "caption")


def cmd_caption(a: argparse.Namespace) -> int:
    from polymodal.tasks.caption.predict import Captioner

    captions = Captioner.load(a.run).caption(list(a.images), beam=a.beam)  # encoder id checked
    for path, cap in zip(a.images, captions):
        print(f"{path}\t{cap}")
    return 0


def cmd_fit_generate(a: argparse.Namespace) -> int:
    return _fit_generation(a, "generate")


def cmd_generate(a: argparse.Namespace) -> int:
    from polymodal.tasks.generate.predict import ImageGenerator

    path = ImageGenerator.load(a.run).grid(a.out, text=a.text, audio=a.audio, n=a.n,
                                           seed=a.seed)  # encoder id checked
    print(f"grid: {path}")
    return 0


def cmd_transcribe(a: argparse.Namespace) -> int:
    from polymodal.tasks.subtitles import subtitle_paths, write_subtitles
    from polymodal.tasks.transcribe import transcribe, transcribe_manifest, transcript_wer

    if bool(a.manifest) == bool(a.audio):
        raise UsageError("give audio files or --manifest (not both)")
    if a.manifest and (a.srt or a.vtt):
        raise UsageError("--srt / --vtt write subtitles for audio files, not for --manifest")
    if a.manifest:
        if not a.out:
            raise UsageError("--manifest needs --out (the manifest to write)")
        res = transcribe_manifest(a.manifest, a.out, column=a.column, beam=a.beam,
                                  progress=not a.quiet)
        print(f"transcribed {res.ok} clips in {res.seconds:.1f} s; written: {a.out} "
              f"(column '{a.column}')")
        bad = [p for p in res.problems if p.level == "error"]
        if bad:
            print(f"skipped {len(bad)} rows (audio that does not decode or is too long):")
            _print_problems(bad, 10)
        if a.wer_against:
            from polymodal.data.manifest import read_manifest

            man = read_manifest(a.out, columns={"text": a.wer_against})
            pairs = [(r.extra.get(a.column), r.text[0]) for r in man.records
                     if r.text and r.extra.get(a.column) is not None]
            print(f"WER vs '{a.wer_against}' ({len(pairs)} clips): "
                  f"{transcript_wer([h for h, _ in pairs], [t for _, t in pairs]):.4f}")
        return 0
    subs = {fmt: (d, subtitle_paths(a.audio, d, fmt))  # name clashes refused before any work
            for fmt, d in (("srt", a.srt), ("vtt", a.vtt)) if d}
    res = transcribe(a.audio, beam=a.beam, progress=not a.quiet)
    for path, text in zip(a.audio, res.texts):
        if text is not None:
            print(f"{path}\t{text}")
    for fmt, (folder, outs) in subs.items():
        done = [write_subtitles(o, segs, fmt) for o, segs in zip(outs, res.segments)
                if segs is not None]
        print(f"{fmt.upper()}: {len(done)} files written to {folder}", file=sys.stderr)
    for p in res.problems:
        print(f"{'error' if p.level == 'error' else 'warning'}: {p}", file=sys.stderr)
    if any(p.level == "error" for p in res.problems):
        return 2
    return 0


def _add_generation_commands(sub, fsub, add: Callable) -> None:
    from polymodal.cli.options import add_config_options
    from polymodal.tasks.caption.config import CaptionConfig
    from polymodal.tasks.generate.config import GenerateConfig

    fc = add("caption", cmd_fit_caption, "train a caption decoder on image features; BLEU / "
             "CIDEr-D / ROUGE-L vs a nearest-neighbour baseline", fsub)
    fc.add_argument("--config", help="YAML with the same keys as the options below")
    add_config_options(fc, CaptionConfig)
    fc.add_argument("--out", required=True)
    fc.add_argument("--resume", action="store_true")

    c = add("caption", cmd_caption, "caption images with a trained caption run")
    c.add_argument("run")
    c.add_argument("images", nargs="+")
    c.add_argument("--beam", type=int, default=None, help="default: the run's beam")

    fg = add("generate", cmd_fit_generate, "train a conditional image generator (cVAE or GAN) "
             "on text or audio embeddings", fsub)
    fg.add_argument("--config", help="YAML with the same keys as the options below")
    add_config_options(fg, GenerateConfig)
    fg.add_argument("--out", required=True)
    fg.add_argument("--resume", action="store_true")

    g = add("generate", cmd_generate, "draw images from a generator run for a text or audio "
            "prompt")
    g.add_argument("run")
    g.add_argument("--text")
    g.add_argument("--audio")
    g.add_argument("--n", type=int, default=16)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default="grid.png")

    t = add("transcribe", cmd_transcribe, "speech to text with the offline Whisper tiny.en")
    t.add_argument("audio", nargs="*")
    t.add_argument("--manifest", help="transcribe a manifest's audio column")
    t.add_argument("--out", help="manifest to write (with the new column)")
    t.add_argument("--column", default="transcript")
    t.add_argument("--beam", type=int, default=1)
    t.add_argument("--wer-against", metavar="COLUMN",
                   help="with --manifest: print the WER against this text column")
    t.add_argument("--srt", metavar="DIR", help="also write DIR/<file stem>.srt per audio file")
    t.add_argument("--vtt", metavar="DIR", help="also write DIR/<file stem>.vtt per audio file")


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from polymodal.cli.options import add_config_options
    from polymodal.tasks.classify.config import ClassifierConfig
    from polymodal.tasks.retrieval.config import RetrievalConfig

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

    ls = add("list", cmd_list, "list the encoders, losses, fusions, heads, caption decoders, "
             "generators or datasets that can be named in a config")
    ls.add_argument("kind", choices=list(LISTS))
    ls.add_argument("--options", action="store_true", help="also list each entry's options "
                    "(imports the modules: slower)")

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
    add_config_options(fr, RetrievalConfig)
    fr.add_argument("--out", required=True)
    fr.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    fr.add_argument("--no-report", action="store_true", help="do not write RUN/report.html")

    s = add("search", cmd_search, "search a run's index with a text, image or audio query")
    s.add_argument("run")
    s.add_argument("--text")
    s.add_argument("--image")
    s.add_argument("--audio")
    s.add_argument("-k", type=int, default=5)
    s.add_argument("--json", action="store_true")
    s.add_argument("--grid", help="write a picture of the hits to this PNG")
    s.add_argument("--queries", metavar="FILE", help="a text file with one query per line (texts; "
                   "file paths for image / audio runs), answered in one batch; with --json, "
                   "one JSON line per query")

    pr = add("predict", cmd_predict, "predict every row of a manifest with a classification "
             "run; write a CSV")
    pr.add_argument("run")
    pr.add_argument("--manifest", required=True)
    pr.add_argument("--out", required=True, help="CSV to write: id,prediction,p_<label>… "
                    "(regression: id,score); skipped rows go to OUT.skipped.jsonl next to it (e.g. preds.skipped.jsonl)")
    pr.add_argument("--column", action="append", metavar="ROLE=COLUMN", help=col_help)
    pr.add_argument("--cache", default=None, help="feature cache folder (default: the run's)")

    ev = add("eval", cmd_eval, "evaluate a run on a manifest split")
    ev.add_argument("run")
    ev.add_argument("--manifest", default=None, help="default: the run's own manifest")
    ev.add_argument("--split", default="test", help="train, val, test or all")
    ev.add_argument("--zero-shot", metavar="COLUMN", help="instead: zero-shot classification of "
                    "the non-text items by their nearest class-name prompt (text runs only)")
    ev.add_argument("--prompt", default="{}", help="prompt template for --zero-shot, "
                    "e.g. 'a drawing of {}'")
    ev.add_argument("--json", action="store_true")

    sv = add("serve", cmd_serve, "serve a retrieval, classification or caption run: HTTP API "
             "(docs at /docs) + web page")
    sv.add_argument("run")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--max-upload-mb", type=float, default=10.0)
    sv.add_argument("--max-batch", type=int, default=64, help="most concurrent searches "
                    "encoded together (1: no batching)")
    sv.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                    help="also answer requests whose Host header is NAME (repeatable; '*': any "
                    "host); localhost, 127.0.0.1, ::1 and --host are always allowed")

    rp = add("report", cmd_report, "write a stand-alone HTML report for a run or compare folder")
    rp.add_argument("path", help="run folder or compare folder")
    rp.add_argument("--out", default="report.html")
    c = add("coco", cmd_datasets_coco, "convert COCO captions JSON to a manifest (one row per "
            "image, all captions kept)", dsub)
    c.add_argument("captions", help="captions_*.json")
    c.add_argument("--images", required=True, help="folder with the images")
    c.add_argument("--out", required=True, help="manifest path (.jsonl)")
    c.add_argument("--split", default=None, help="split value for every row (train/val/test)")
    def classify_options(sp: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
        sp.add_argument("--config", help="YAML with the keys of ClassifierConfig (options below "
                        "override it)")
        add_config_options(sp, ClassifierConfig, skip=skip)

    fc = add("classify", cmd_fit_classify, "predict a label / labels / a number from fused "
             "modalities (or one modality: --fusion unimodal:image)", fsub)
    classify_options(fc)
    fc.add_argument("--out", required=True)
    fc.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    fc.add_argument("--no-report", action="store_true", help="do not write RUN/report.html")

    cp = add("compare", cmd_compare, "train every fusion and each unimodal baseline on the same "
             "cached features and splits, several seeds; table + HTML report")
    classify_options(cp, skip=("fusion",))  # --fusions chooses the methods
    cp.add_argument("--fusions", default="all", help="'all' or a comma list, e.g. "
                    "early,late,unimodal:image")
    cp.add_argument("--seeds", type=int, default=3)
    cp.add_argument("--out", required=True)

    rb = add("robustness", cmd_robustness, "test metric of a classification run or compare "
             "folder with a modality missing or noisy at test time")
    rb.add_argument("path", help="run folder or compare folder")
    rb.add_argument("--missing", action="append", metavar="MODALITY:FRACTIONS",
                    help="e.g. audio:0,0.25,0.5,0.75,1 (repeatable)")
    rb.add_argument("--noise", action="append", metavar="MODALITY:snr=DBS",
                    help="Gaussian noise on the features, e.g. image:snr=20,10,0 (repeatable)")
    rb.add_argument("--split", default="test")
    rb.add_argument("--seed", type=int, default=0)
    rb.add_argument("--repeats", type=int, default=1, help="random draws per level (averaged)")
    rb.add_argument("--out", default=None, help="output folder (default: PATH)")

    ex = add("explain", cmd_explain, "modality importance (permutation, ablation, Shapley) of "
             "a classification run, or one row's prediction explained (--row)")
    ex.add_argument("run")
    ex.add_argument("--row", help="manifest id of the row to explain")
    ex.add_argument("--split", default="test")
    ex.add_argument("--repeats", type=int, default=5, help="permutations per modality")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--json", action="store_true")
    _add_generation_commands(sub, fsub, add)
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
