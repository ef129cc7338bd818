"""Start-up of a process that embeds one text query (what ``polymodal search RUN --text …`` and a
``serve`` worker pay before the first answer), in fresh interpreters, interleaved.

``ref``: the path before this change: transformers' ``AutoTokenizer`` + ``AutoModel`` (sdpa)
for the bundled MiniLM, and scikit-learn's ``sklearn.base`` imported (as `LinearCCA` did for
every retrieval task). ``ours``: ``build_encoder("minilm")`` (the tokenizers library and
polymodal's own BERT, `polymodal.features.encoders.bert`) with ``polymodal.tasks.retrieval.fit``
imported. Both mean-pool and normalise one query; the script checks the two vectors are equal.
Last line: ``ratio N.NNx`` (median ref seconds / median ours seconds).

    .venv/bin/python benchmarks/startup.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

QUERY = "a red apple on a wooden table"

REF = f"""
import numpy as np, torch, sklearn.base, polymodal.tasks.retrieval.fit
from transformers import AutoModel, AutoTokenizer
from polymodal.features.encoders.text import mean_pool, minilm_model_dir
d = minilm_model_dir()
tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
model = AutoModel.from_pretrained(d, local_files_only=True, attn_implementation="sdpa").eval()
enc = tok([{QUERY!r}], truncation=True, max_length=256, return_tensors="pt")
with torch.inference_mode():
    h = model(**{{k: enc[k] for k in ("input_ids", "attention_mask")}}).last_hidden_state
v = torch.nn.functional.normalize(mean_pool(h, enc["attention_mask"]), dim=-1)[0].numpy()
np.save(__import__("sys").argv[1], v)
"""

OURS = f"""
import numpy as np, polymodal.tasks.retrieval.fit
from polymodal.features.encoders.registry import build_encoder
v = build_encoder("minilm", backend="torch", precision="fp32").encode({QUERY!r}).numpy()
np.save(__import__("sys").argv[1], v)
"""


def run(code: str, out: str) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True,
                         env=env)
    took = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(res.stderr[-2000:])
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import tempfile

    import numpy as np

    times: dict[str, list[float]] = {"ref": [], "ours": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for name, code in (("ref", REF), ("ours", OURS)):
                took = run(code, os.path.join(tmp, f"{name}.npy"))
                times[name].append(took)
                print(f"run {i + 1}: {name} {took:.2f} s", flush=True)
        a, b = np.load(os.path.join(tmp, "ref.npy")), np.load(os.path.join(tmp, "ours.npy"))
    print(f"vectors equal: {bool(np.array_equal(a, b))} (max abs diff "
          f"{float(np.abs(a - b).max()):.2e})")
    ref, ours = statistics.median(times["ref"]), statistics.median(times["ours"])
    print(f"median: ref {ref:.2f} s, ours {ours:.2f} s; load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"ratio {ref / ours:.2f}x")


if __name__ == "__main__":
    main()
