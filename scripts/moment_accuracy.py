"""Moment accuracy of a text -> video retrieval run (issue 12: text -> video moment search).

    python scripts/moment_accuracy.py RUN [--column timing] [--split test]

For every (clip of the split, distinct digit word in it): ``in_clip`` = the best frame of that
clip for the word lies inside a span where the word is shown; ``global`` = searching the word
over the whole index, the top clip shows the word at the returned ``start_s``. Prints JSON.
"""
from __future__ import annotations

import argparse
import json

from polymodal.tasks.retrieval.moments import evaluate_moments
from polymodal.tasks.retrieval.predict import Retriever


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--column", default="timing")
    ap.add_argument("--split", default="test")
    a = ap.parse_args()
    print(json.dumps(evaluate_moments(Retriever.load(a.run), a.column, a.split), indent=1))


if __name__ == "__main__":
    main()
