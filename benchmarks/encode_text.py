"""Text encoding throughput: polymodal's ``minilm`` vs ``SentenceTransformer.encode``.

Same model (all-MiniLM-L6-v2, bundled offline), same distinct sentences, same CPU. Prints
sentences/s for both, the ratio, and the min / mean cosine between the two sets of vectors.
Runs are interleaved (ST, ours, ST, ours, ...) so background load hits both alike.

    .venv/bin/python benchmarks/encode_text.py [--data ../shared/data] [--n 2000] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

WORDS = ("red blue green small large old new happy quiet bright dark wooden metal cat dog "
         "bird house tree car river mountain city garden child teacher robot flower train "
         "runs sleeps jumps sings reads paints builds watches carries near under behind "
         "across during after before the a one two many").split()


def caption_sentences(data: Path, n: int) -> list[str]:
    """Distinct sentences from openclipart titles + descriptions / keywords."""
    out: dict[str, None] = {}
    with (data / "openclipart" / "captions.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            title, desc = r["title"].strip(), (r.get("description") or "").strip()
            kw = ", ".join((r.get("keywords") or [])[:8])
            text = f"{title}. {desc}" if desc else (f"{title}: {kw}" if kw else title)
            out.setdefault(" ".join(text.split()), None)
    sentences = list(out)
    random.Random(0).shuffle(sentences)
    return sentences[:n]


def synthetic_sentences(n: int) -> list[str]:
    """Distinct random word sequences of 3-40 words (when the real data is absent)."""
    rng, out = random.Random(0), {}
    while len(out) < n:
        out.setdefault(" ".join(rng.choices(WORDS, k=rng.randint(3, 40))) + ".", None)
    return list(out)


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--st-batch-size", type=int, default=32, help="ST's default is 32")
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from polymodal.features.encoders.text import MiniLMEncoder

    if (args.data / "openclipart" / "captions.jsonl").is_file():
        sentences, source = caption_sentences(args.data, args.n), "openclipart captions"
    else:
        sentences, source = synthetic_sentences(args.n), "synthetic"
    assert len(set(sentences)) == len(sentences)
    ours = MiniLMEncoder()
    st = SentenceTransformer(str(ours.model_dir), device="cpu")
    print(f"{len(sentences)} distinct sentences ({source}); torch threads "
          f"{torch.get_num_threads()}, cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    st.encode(sentences[:64], batch_size=args.st_batch_size)  # warm-up
    ours.encode(sentences[:64])

    st_rates, our_rates, ratios = [], [], []
    for rep in range(args.repeats):
        t_st, ref = timed(lambda: st.encode(sentences, batch_size=args.st_batch_size,
                                            convert_to_tensor=True))
        t_ours, vecs = timed(lambda: ours.encode(sentences))
        st_rates.append(len(sentences) / t_st)
        our_rates.append(len(sentences) / t_ours)
        ratios.append(t_st / t_ours)
        print(f"run {rep + 1}: sentence-transformers {st_rates[-1]:.1f} sentences/s | "
              f"polymodal minilm {our_rates[-1]:.1f} sentences/s | ratio {ratios[-1]:.2f}x")
    cos = torch.nn.functional.cosine_similarity(vecs, ref.float().cpu())
    print(f"median: ST {statistics.median(st_rates):.1f} sentences/s, ours "
          f"{statistics.median(our_rates):.1f} sentences/s, ratio "
          f"{statistics.median(ratios):.2f}x")
    print(f"cosine ours vs ST: min {cos.min().item():.6f} mean {cos.mean().item():.6f}")


if __name__ == "__main__":
    main()
