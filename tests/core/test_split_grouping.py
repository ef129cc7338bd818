"""`split_grouping`: the column a manifest's train / val split keeps apart, on the bundled
av-digits sample (val and test are each one held-out FSDD speaker)."""
from __future__ import annotations

import json

from polymodal.core.splits import split_grouping
from polymodal.data.datasets import sample_path


def sample_columns():
    rows = [json.loads(line) for line in
            sample_path("av-digits").read_text().splitlines() if line.strip()]
    cols = {c: [r.get(c) for r in rows] for c in ("speaker", "recording", "mnist_index",
                                                   "label", "id")}
    return cols, [r["split"] for r in rows]


def test_speaker_is_the_coarsest_grouping_and_keys_labels_are_not():
    cols, split = sample_columns()
    # id / mnist_index (and, in 300 rows, recording) are (nearly) per-row keys; label crosses
    # splits
    assert split_grouping(cols, split) == "speaker"
    assert split_grouping({k: cols[k] for k in ("recording", "label", "id", "mnist_index")},
                          split) is None
    # of two groupings the coarser: speaker pairs (3 groups) over speakers (6)
    pairs = [{"george": "a", "jackson": "a", "theo": "b", "yweweler": "b"}.get(s, s)
             for s in cols["speaker"]]
    assert split_grouping({"speaker": cols["speaker"], "pair": pairs}, split) == "pair"


def test_a_speaker_in_two_splits_or_missing_values_break_the_grouping():
    cols, split = sample_columns()
    spk = list(cols["speaker"])
    val_speaker = next(s for s, sp in zip(spk, split) if sp == "val")
    i = next(i for i, sp in enumerate(split) if sp == "train")
    moved = spk[:i] + [val_speaker] + spk[i + 1:]  # one train row now names the val speaker
    assert split_grouping({"speaker": moved}, split) is None
    assert split_grouping({"speaker": spk[:i] + [None] + spk[i + 1:]}, split) is None
    one = [s if sp != "train" else "george" for s, sp in zip(spk, split)]
    assert split_grouping({"speaker": one}, split) is None  # one train group: nothing to fold
