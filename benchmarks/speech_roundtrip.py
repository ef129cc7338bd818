"""Speech round trip: text -> `polymodal speak` -> `polymodal transcribe` -> WER.

Two text sets: the ``--n`` (200) main captions drawn (seed 0) from the OpenClipart test split (built with
`build_openclipart` from ``--data``), and the ten FSDD digit words (zero … nine) at three
rates. Each voice speaks them through `speak_manifest` (the code of ``polymodal speak
--manifest``), Whisper tiny.en transcribes them through `transcribe_manifest` (``polymodal
transcribe --manifest``), and the WER against the spoken text is printed three ways: ``none``
(split on spaces, case and punctuation kept: raw), ``default`` (lower case, punctuation
dropped, digits spelled out) and ``whisper`` (Whisper's EnglishTextNormalizer). The LAST line
is the OpenClipart WER (whisper-normalised) of each voice.

    .venv/bin/python benchmarks/speech_roundtrip.py [--data ../shared/data] [--n 200]
        [--voices espeak:en-us,piper:en_US-joe-medium]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DIGITS = "zero one two three four five six seven eight nine".split()
NORMS = ("none", "default", "whisper")


def caption_manifest(data: Path, out: Path, n: int) -> Path:
    """The first ``n`` test-split rows of OpenClipart with their main caption as ``text``."""
    from polymodal.data.datasets.openclipart import build_openclipart

    full = build_openclipart(data, out / "oc", progress=False)
    import random

    test = [json.loads(x) for x in full.read_text().splitlines()]
    test = [{"id": r["id"], "text": r["text"][0]} for r in test if r["split"] == "test"]
    rows = random.Random(0).sample(test, min(n, len(test)))  # across categories, seeded
    path = out / "captions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def digit_manifest(out: Path) -> Path:
    path = out / "digits.jsonl"
    path.write_text("".join(json.dumps({"id": w, "text": w}) + "\n" for w in DIGITS))
    return path


def round_trip(man: Path, voice: str, rate: float, work: Path) -> dict[str, float]:
    from polymodal.data.manifest import read_manifest
    from polymodal.tasks.speak import speak_manifest
    from polymodal.tasks.transcribe import transcribe_manifest, transcript_wer

    tag = f"{man.stem}-{voice.replace(':', '_').replace('+', '_')}-{rate:g}"
    spoken = work / tag / "spoken.jsonl"
    t0 = time.perf_counter()
    sp = speak_manifest(man, spoken, voice=voice, rate=rate, progress=False)
    t1 = time.perf_counter()
    tr = work / tag / "transcribed.jsonl"
    transcribe_manifest(spoken, tr, progress=False)
    t2 = time.perf_counter()
    recs = read_manifest(tr).records
    hyps = [r.extra.get("transcript") for r in recs]
    refs = [r.text[0] for r in recs]
    out = {n: transcript_wer(hyps, refs, n) for n in NORMS}
    out.update(clips=len(recs), skipped=len(sp.problems), speak_s=t1 - t0, transcribe_s=t2 - t1,
               audio_s=sp.audio_seconds)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--voices", default="espeak:en-us+Diogo,piper:en_US-joe-medium")
    a = ap.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cpus {os.cpu_count()}")
    voices = a.voices.split(",")
    last = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        caps, digits = caption_manifest(Path(a.data), work, a.n), digit_manifest(work)
        print(f"{'set':<22}{'voice':<26}{'rate':>5}{'clips':>6}" +
              "".join(f"{'WER ' + n:>13}" for n in NORMS) + f"{'speak s':>9}{'asr s':>8}")
        for man, rates in ((caps, (1.0,)), (digits, (0.8, 1.0, 1.3))):
            for voice in voices:
                for rate in rates:
                    r = round_trip(man, voice, rate, work)
                    print(f"{man.stem:<22}{voice:<26}{rate:>5g}{r['clips']:>6}"
                          + "".join(f"{r[n]:>13.4f}" for n in NORMS)
                          + f"{r['speak_s']:>9.1f}{r['transcribe_s']:>8.1f}", flush=True)
                    if man is caps:
                        last.append(f"{voice} {r['whisper']:.4f}")
    print(f"round-trip WER (whisper-normalised) on {a.n} OpenClipart captions: "
          + "; ".join(last))


if __name__ == "__main__":
    main()
