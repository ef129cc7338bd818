"""Audio throughput: ``whisper-tiny`` features and transcription, default backend vs today's path.

Same model (Whisper tiny.en, bundled offline), same FSDD clips (every speaker, every digit),
same CPU. "ref" is today's path before issue 10: CTranslate2 float32 encodes the full 30-s
padded window (features), and transcription runs CT2 float32 one clip at a time. "ours" is the
default: the torch encoder with the silence-cached window (`polymodal.features.encoders.
whisper_torch`: only a clip's live positions run; the padding's keys / values come from a
silent window) for the features, and CT2 int8 decoding batched (8 clips) on that encoder
output. Chunks of clips are run interleaved (ref, ours, ref, ours, ...) so background load
hits both alike. Prints clips/s, the feature cosine (min / mean) ours vs ref, cross-speaker
1-NN digit accuracy of both, WER and digit accuracy (transcript = the digit's word) of both,
and last ``ratio N.NNx`` (features + transcription wall time, ref / ours).

    flock /tmp/mv/bench.lock .venv/bin/python benchmarks/encode_audio.py [--n 300] [--chunk 20]

--n 300 takes ~8 min on 2 shared cores (the ref path encodes a full 30-s window per clip twice).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
WORDS = "zero one two three four five six seven eight nine".split()


def clips(data: Path, n: int) -> list[Path]:
    """``n`` FSDD clips (a multiple of 60): each speaker says each digit ``n // 60`` times."""
    per = max(1, n // 60)
    return [data / "fsdd" / "recordings" / f"{d}_{s}_{i}.wav"
            for s in SPEAKERS for d in range(10) for i in range(per)]


def nn_accuracy(x, digits, speakers) -> float:
    """Cross-speaker 1-NN digit accuracy (cosine; neighbours from other speakers only)."""
    import numpy as np

    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    sim[speakers[:, None] == speakers[None]] = -9.0
    return float((digits[sim.argmax(1)] == digits).mean())


def digit_accuracy(texts, refs) -> float:
    """Share of clips whose normalised transcript is exactly the digit's word."""
    from polymodal.tasks.transcribe import transcript_wer

    return sum(transcript_wer([t], [r]) == 0 for t, r in zip(texts, refs)) / len(refs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--chunk", type=int, default=20)
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    args = ap.parse_args()

    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from polymodal.tasks.transcribe import Transcriber, transcript_wer

    torch.set_num_threads(args.threads)  # the torch encoder: same threads as CT2
    print(f"load average {os.getloadavg()}; torch cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}", flush=True)
    import ctranslate2

    print(f"ctranslate2 {ctranslate2.__version__}; compute types on cpu: "
          f"{sorted(ctranslate2.get_supported_compute_types('cpu'))}")
    paths = clips(Path(args.data), args.n)
    digits = np.array([int(p.name[0]) for p in paths])
    speakers = np.array([p.name.split("_")[1] for p in paths])
    refs = [WORDS[d] for d in digits]
    runs = {"ref": Transcriber(threads=args.threads, backend="ctranslate2", precision="fp32",
                               batch_size=1),
            "ours": Transcriber(threads=args.threads)}
    for name, tr in runs.items():
        print(f"{name:4s}: {tr.encoder.id}")
        tr.encoder.encode(paths[:2])  # warm-up
    wall = {k: {"features": 0.0, "transcribe": 0.0} for k in runs}
    vecs = {k: [] for k in runs}
    texts = {k: [] for k in runs}
    for s in tqdm(range(0, len(paths), args.chunk), desc="chunks (ref + ours)", unit="chunk"):
        part = paths[s:s + args.chunk]
        for name, tr in runs.items():
            t = time.perf_counter()
            vecs[name].append(tr.encoder.encode(part, numpy=True))
            wall[name]["features"] += time.perf_counter() - t
            t = time.perf_counter()
            texts[name] += tr.transcribe_waves([tr.load(p) for p in part])
            wall[name]["transcribe"] += time.perf_counter() - t
    x = {k: np.concatenate(v) for k, v in vecs.items()}
    cos = (x["ref"] * x["ours"]).sum(1) / (np.linalg.norm(x["ref"], axis=1)
                                           * np.linalg.norm(x["ours"], axis=1))
    for name in runs:
        f, t = wall[name]["features"], wall[name]["transcribe"]
        print(f"{name:4s}: features {len(paths) / f:6.2f} clips/s ({f:6.1f} s)  transcription "
              f"{len(paths) / t:6.2f} clips/s ({t:6.1f} s)  1-NN digit acc "
              f"{nn_accuracy(x[name], digits, speakers):.3f}  WER "
              f"{transcript_wer(texts[name], refs):.4f}  digit acc "
              f"{digit_accuracy(texts[name], refs):.3f}")
    print(f"feature cosine ours vs ref: min {cos.min():.4f} mean {cos.mean():.4f} "
          f"(n={len(paths)})")
    same = sum(a == b for a, b in zip(texts["ref"], texts["ours"]))
    print(f"identical transcripts ours vs ref: {same}/{len(paths)}")
    print(f"load average {os.getloadavg()}")
    fr = wall["ref"]["features"] / wall["ours"]["features"]
    tr_ = wall["ref"]["transcribe"] / wall["ours"]["transcribe"]
    print(f"features ratio {fr:.2f}x  transcription ratio {tr_:.2f}x")
    total = sum(wall["ref"].values()) / sum(wall["ours"].values())
    print(f"ratio {total:.2f}x")


if __name__ == "__main__":
    main()
