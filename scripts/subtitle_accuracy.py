"""Word accuracy and start-time error of subtitles against a manifest's timing column
(issue 12: `transcribe --srt` on av-digits-video).

    python scripts/subtitle_accuracy.py MANIFEST SRT_DIR [--split test] [--column timing]
    python scripts/subtitle_accuracy.py MANIFEST --list [--split test]   # the split's videos

SRT_DIR/<video file stem>.srt is scored against the row's timing (list of {word,
audio_start_s, ...}) with `polymodal.metrics.subtitles.subtitle_accuracy`; a missing SRT
counts as no words. Prints files, word accuracy, mean and median |start error| (seconds).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from polymodal.core.errors import PolymodalError
from polymodal.data.manifest import read_manifest
from polymodal.metrics.subtitles import SubtitleScore, parse_srt, subtitle_accuracy


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("srt_dir", nargs="?")
    ap.add_argument("--split", default="test", help="split to score ('all': every row)")
    ap.add_argument("--column", default="timing")
    ap.add_argument("--list", action="store_true", help="print the split's video files")
    a = ap.parse_args()
    try:
        man = read_manifest(a.manifest)
        recs = [r for r in man.split(None if a.split == "all" else a.split)
                if r.video is not None]
        if a.list:
            print("\n".join(str(r.video) for r in recs))
            return 0
        if not a.srt_dir:
            ap.error("give SRT_DIR (or --list)")
        total, missing = SubtitleScore(0, 0, []), 0
        for r in recs:
            timing = r.extra.get(a.column)
            if isinstance(timing, str):
                timing = json.loads(timing)
            if not timing:
                raise PolymodalError(f"row {r.row}: no '{a.column}' to score against")
            srt = Path(a.srt_dir) / f"{Path(r.video).stem}.srt"
            cues = parse_srt(srt.read_text(encoding="utf-8"), str(srt)) if srt.exists() else []
            missing += not srt.exists()
            total = total + subtitle_accuracy(cues, timing)
    except PolymodalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"files: {len(recs)} (split {a.split}; {missing} without an SRT)")
    print(f"reference words: {total.reference}, matched: {total.matched}")
    print(f"word accuracy: {total.accuracy:.4f}")
    print(f"start error (matched words): mean {total.mean_error:.3f} s, "
          f"median {total.median_error:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
