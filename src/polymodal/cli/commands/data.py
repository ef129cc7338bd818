"""Commands on data: ``validate``, ``encode``, ``datasets list|build|coco``, ``transcribe`` and
``list`` (the names a config can use)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from polymodal.cli.commands.common import pairs, print_problems, print_row_report
from polymodal.core.errors import UsageError


def cmd_validate(a: argparse.Namespace) -> int:
    from polymodal.data.validate import validate_manifest

    report = validate_manifest(a.manifest, columns=pairs(a.column, "--column"),
                               check_media=not a.no_media, progress=not a.quiet)
    if a.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(report.table())
    return 1 if report.errors else 0


def cmd_encode(a: argparse.Namespace) -> int:
    from polymodal.features.encode import encode_manifest

    res = encode_manifest(a.manifest, a.out, encoders=pairs(a.encoder, "--encoder"),
                          cache_dir=a.cache, batch_size=a.batch_size, workers=a.workers,
                          progress=not a.quiet, columns=pairs(a.column, "--column"),
                          backend=a.backend, precision=a.precision, engine=a.engine,
                          engine_options={"address": a.address, "actors": a.actors,
                                          "num_cpus_per_actor": a.num_cpus_per_actor},
                          decode=a.decode)
    print(res.table())
    print(f"rows: {res.rows}  written to: {res.out}")
    print_row_report(res.warnings, res.skipped, res.out / "skipped.jsonl")
    return 0


def cmd_datasets_list(a: argparse.Namespace) -> int:
    from polymodal.data.datasets import list_datasets

    for name, desc in list_datasets():
        print(f"{name:<16} {desc}")
    return 0


def cmd_datasets_build(a: argparse.Namespace) -> int:
    from polymodal.data.datasets import build_dataset

    from polymodal.cli.options import coerce_value

    opts = {k: coerce_value(v) for k, v in pairs(a.option, "--option").items()}
    for k in ("seed", "source", "out", "progress"):
        if k in opts:
            raise UsageError(f"--option {k}=…: use --{k} instead" if k != "progress"
                             else "--option progress=…: use -q for no progress bars")
    if a.limit is not None:
        opts["limit"] = a.limit
    if getattr(a, "n_images", None) is not None:
        opts["n_images"] = a.n_images
    source = a.source
    if source is None:
        from polymodal.data.datasets import DATASETS

        if DATASETS.get(a.name).metadata.get("source") is not None:
            raise UsageError(f"dataset '{a.name}' needs --source (the folder holding it)")
        source = "."
    path = build_dataset(a.name, Path(source), Path(a.out), seed=a.seed,
                         progress=not a.quiet, **opts)
    print(f"manifest: {path}")
    return 0


def cmd_datasets_coco(a: argparse.Namespace) -> int:
    from polymodal.data.coco import coco_to_manifest

    print(f"manifest: {coco_to_manifest(a.captions, a.images, a.out, split=a.split)}")
    return 0


def cmd_transcribe(a: argparse.Namespace) -> int:
    from polymodal.tasks.subtitles import subtitle_paths, write_subtitles
    from polymodal.tasks.transcribe import transcribe, transcribe_manifest, transcript_wer

    if bool(a.manifest) == bool(a.audio):
        raise UsageError("give audio files or --manifest (not both)")
    if a.manifest and (a.srt or a.vtt):
        raise UsageError("--srt / --vtt write subtitles for audio files, not for --manifest")
    if a.manifest and getattr(a, "cues", "chunks") != "chunks":
        raise UsageError("--cues words is for subtitles of audio files, not for --manifest")
    if a.manifest and getattr(a, "context", "none") != "none":
        raise UsageError("--context is for audio files with --cues words, not for --manifest")
    if getattr(a, "context", "none") != "none" and getattr(a, "cues", "chunks") != "words":
        raise UsageError(f"--context {a.context} needs --cues words (it uses word probabilities)")
    if a.manifest and getattr(a, "prompt", None):
        raise UsageError("--prompt is for audio files, not for --manifest")
    if a.manifest:
        if not a.out:
            raise UsageError("--manifest needs --out (the manifest to write)")
        res = transcribe_manifest(a.manifest, a.out, column=a.column, beam=a.beam,
                                  progress=not a.quiet, precision=a.precision)
        print(f"transcribed {res.ok} clips in {res.seconds:.1f} s; written: {a.out} "
              f"(column '{a.column}')")
        bad = [p for p in res.problems if p.level == "error"]
        if bad:
            print(f"skipped {len(bad)} rows (audio that does not decode or is too long):")
            print_problems(bad, 10)
        if a.wer_against:
            from polymodal.data.manifest import read_manifest

            man = read_manifest(a.out, columns={"text": a.wer_against})
            pairs = [(r.extra.get(a.column), r.text[0]) for r in man.records
                     if r.text and r.extra.get(a.column) is not None]
            wer = transcript_wer([h for h, _ in pairs], [t for _, t in pairs], a.normalize)
            print(f"WER vs '{a.wer_against}' ({len(pairs)} clips, normalize={a.normalize}): "
                  f"{wer:.4f}")
        return 0
    refs = _references(a.reference, len(a.audio))
    subs = {fmt: (d, subtitle_paths(a.audio, d, fmt))  # name clashes refused before any work
            for fmt, d in (("srt", a.srt), ("vtt", a.vtt)) if d}
    res = transcribe(a.audio, beam=a.beam, progress=not a.quiet, precision=a.precision,
                     cues=getattr(a, "cues", "chunks"), prompt=getattr(a, "prompt", None),
                     context=getattr(a, "context", "none"))
    if res.glossary is not None:
        print(f"context: glossary {', '.join(res.glossary) or '(none)'} ({res.coverage:.0%} of "
              f"the confident words); " + (f"{res.second_pass} files decoded again with the "
              f"prompt '{res.context_prompt}'" if res.context_prompt else "no second pass "
              + ("(needs a glossary of >= 1/3 of them)" if res.glossary else
                 "(no word heard confidently in >= 3 files and >= 5% of them)")),
              file=sys.stderr)
    for path, text in zip(a.audio, res.texts):
        if text is not None:
            print(f"{path}\t{text}")
    for fmt, (folder, outs) in subs.items():
        done = [write_subtitles(o, segs, fmt) for o, segs in zip(outs, res.segments)
                if segs is not None]
        print(f"{fmt.upper()}: {len(done)} files written to {folder}", file=sys.stderr)
    for p in res.problems:
        print(f"{'error' if p.level == 'error' else 'warning'}: {p}", file=sys.stderr)
    if refs is not None:
        _print_wer(a.audio, res.texts, refs, a.normalize)
    if any(p.level == "error" for p in res.problems):
        return 2
    return 0


def _references(paths: list[str] | None, n: int) -> list[str] | None:
    """The reference texts of ``--reference`` (checked before any transcription)."""
    if not paths:
        return None
    if len(paths) != n:
        raise UsageError(f"--reference given {len(paths)} times for {n} files: one per file")
    out = []
    for p in paths:
        try:
            out.append(Path(p).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"--reference {p}: cannot read ({e.__class__.__name__})") from None
    return out


def _print_wer(files: list[str], hyps: list[str | None], refs: list[str], norm: str) -> None:
    from polymodal.metrics.textgen import transcript_normalizer
    from polymodal.tasks.transcribe import transcript_wer

    f = transcript_normalizer("default")  # words counted with digits spelled out (Whisper's
    for path, h, r in zip(files, hyps, refs):  # normaliser joins "two six" into one "26")
        if h is not None:
            nh, nr = len(f(h).split()), len(f(r).split())
            print(f"{path}: {nh} words transcribed, {nr} in the reference "
                  f"({100 * (nh - nr) / max(nr, 1):+.1f} %); WER {transcript_wer([h], [r], norm):.4f}"
                  f" (normalize={norm})")
    if sum(h is not None for h in hyps) > 1:
        print(f"WER over all files (normalize={norm}): {transcript_wer(hyps, refs, norm):.4f}")


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
