"""Build a long real-media audio file and its reference transcript, for `polymodal transcribe`.

``--kind digits``: FSDD recordings (real speakers, all six, seeded order) joined with 0.35 s
gaps. ``--kind speech``: OpenClipart drawing descriptions (sentences of 6+ words, seeded
order) spoken by ``--voice`` with 0.7 s gaps. Stops at ``--seconds``. Writes OUT/long-KIND.wav
(16 kHz) and OUT/long-KIND.txt (the words spoken, in order).

    .venv/bin/python scripts/make_long_audio.py --out /tmp/long --seconds 300 --kind speech
    polymodal transcribe /tmp/long/long-speech.wav --reference /tmp/long/long-speech.txt
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
WORDS = "zero one two three four five six seven eight nine".split()
SR = 16000


def digits(data: Path, seconds: float, rng: random.Random) -> tuple[list[np.ndarray], list[str]]:
    import soundfile as sf

    from polymodal.data.audio import resample

    files = sorted((data / "fsdd" / "recordings").glob("*.wav"))
    rng.shuffle(files)
    waves, words, total = [], [], 0.0
    gap = np.zeros(int(0.35 * SR), np.float32)
    for f in files:
        if total >= seconds:
            break
        w, sr = sf.read(str(f), dtype="float32")
        w = resample(w if w.ndim == 1 else w.mean(axis=1), sr, SR)
        waves += [w, gap]
        words.append(WORDS[int(f.name.split("_")[0])])
        total += (len(w) + len(gap)) / SR
    return waves, words


def speech(data: Path, seconds: float, rng: random.Random, voice: str
           ) -> tuple[list[np.ndarray], list[str]]:
    from polymodal.data.audio import resample
    from polymodal.data.speech import synthesize

    rows = [json.loads(x) for x in (data / "openclipart" / "captions.jsonl").read_text(
        encoding="utf-8").splitlines() if x.strip()]
    seen, texts = set(), []
    for r in rows:
        d = " ".join(str(r.get("description") or "").split())
        if (6 <= len(d.split()) <= 30 and d.isascii() and "http" not in d and d not in seen
                and all(c.isalpha() or c in " ,.'-" for c in d)):
            seen.add(d)
            texts.append(d)
    rng.shuffle(texts)
    waves, words, total = [], [], 0.0
    gap = np.zeros(int(0.7 * SR), np.float32)
    for t in texts:
        if total >= seconds:
            break
        w, sr = synthesize(t, voice)
        w = resample(w, sr, SR)
        waves += [w, gap]
        words.append(t)
        total += (len(w) + len(gap)) / SR
    return waves, words


def main() -> None:
    import soundfile as sf

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--kind", choices=("digits", "speech"), default="speech")
    ap.add_argument("--voice", default="piper:en_US-joe-medium")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    waves, words = (digits(Path(a.data), a.seconds, rng) if a.kind == "digits"
                    else speech(Path(a.data), a.seconds, rng, a.voice))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    wav = np.concatenate(waves)
    sf.write(str(out / f"long-{a.kind}.wav"), wav, SR, subtype="PCM_16")
    (out / f"long-{a.kind}.txt").write_text(" ".join(words) + "\n", encoding="utf-8")
    print(f"{out / f'long-{a.kind}.wav'}: {len(wav) / SR:.1f} s, "
          f"{sum(len(w.split()) for w in words)} words")


if __name__ == "__main__":
    main()
