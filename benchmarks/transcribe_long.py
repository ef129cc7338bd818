"""Long-audio transcription: polymodal's pause-cut chunks vs faster-whisper's long form.

Builds ~75 s of one FSDD speaker's digits (0.35 s gaps, seeded), then, interleaved in one
process, transcribes it (a) the way ``polymodal transcribe`` does (`Transcriber.transcribe_long`:
chunks of <= 10 s cut in pauses, batched) and (b) with faster-whisper's long-form
``WhisperModel.transcribe`` (30 s windows advanced by predicted timestamps; conditioning on the
previous text off, as polymodal's first version had it), same model and compute type. Prints
the word error rate of each (digits and digit words normalised to words) and, last,
``ratio N.NNx`` = long-form wall / chunks wall.

    .venv/bin/python benchmarks/transcribe_long.py [--data ../shared/data] [--repeats 1]
"""
from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
WORDS = "zero one two three four five six seven eight nine".split()


def words(text: str) -> str:
    """Lower-case words, each digit of a number spelt out ("4,53" -> "four five three")."""
    out = []
    for w in re.sub(r"[^\w\s]", " ", text.lower()).split():
        out += [WORDS[int(c)] for c in w] if w.isdigit() else [w]
    return " ".join(out)


def build(data: Path, out: Path, seconds: float = 75.0) -> str:
    """Concatenate one speaker's FSDD digits into ``out``; -> the spoken words."""
    import numpy as np
    import soundfile as sf

    files = sorted((data / "fsdd" / "recordings").glob("*_jackson_*.wav"))
    random.Random(3).shuffle(files)
    parts, spoken, t = [], [], 0.0
    while t < seconds:
        f = files.pop()
        w, sr = sf.read(f, dtype="float32")
        parts += [w, np.zeros(int(0.35 * sr), np.float32)]
        spoken.append(WORDS[int(f.name[0])])
        t += len(w) / sr + 0.35
    sf.write(out, np.concatenate(parts), sr)
    return " ".join(spoken)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    import jiwer
    import torch

    from polymodal.tasks.transcribe import Transcriber, audio_blocks

    tr = Transcriber()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "long.wav"
        ref = build(args.data, path)
        wav = next(audio_blocks(path))[1]
        print(f"{len(wav) / 16000:.1f} s, {len(ref.split())} words; compute "
              f"{tr.encoder.whisper.model.compute_type}; load {os.getloadavg()[0]:.2f}; cpu "
              f"capability {torch.backends.cpu.get_cpu_capability()}")

        def chunks() -> str:
            return " ".join(s.text for s in tr.transcribe_long(path))

        def long_form() -> str:
            segs, _ = tr.encoder.whisper.transcribe(wav, language="en", beam_size=1,
                                                    vad_filter=False,
                                                    condition_on_previous_text=False)
            return " ".join(s.text for s in segs)

        walls: dict[str, list[float]] = {"chunks": [], "long form": []}
        for rep in range(args.repeats):
            for name, fn in (("chunks", chunks), ("long form", long_form)):
                t = time.perf_counter()
                hyp = words(fn())
                walls[name].append(time.perf_counter() - t)
                print(f"run {rep + 1}: {name}: {walls[name][-1]:.1f} s, WER "
                      f"{jiwer.wer(ref, hyp):.3f}, {len(hyp.split())} words", flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    print(f"ratio {med['long form'] / med['chunks']:.2f}x")


if __name__ == "__main__":
    main()
