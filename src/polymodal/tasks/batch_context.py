"""``--context batch``: unsupervised cross-file context for Whisper, from the batch's own audio.

Whisper tiny.en hears a clip with no text before it; on short clips of an unfamiliar voice it
guesses ("nine" -> "Nice", "zero six" -> "You will take"). Across a batch of files from one
source, though, the same words recur and many are recognised with high confidence somewhere.
With ``context="batch"`` transcription takes two passes over the files given:

1. every file is decoded as usual (word times, `word_times.decode_words`), keeping Whisper's
   probability of each word;
2. the **glossary**: words recognised with probability >= `CONFIDENT` in at least
   `MIN_FILES` files and in at least `MIN_SHARE` of the files, most files first, at most
   `MAX_WORDS` (`glossary`). Words are counted after the transcript normaliser
   (`metrics.textgen.normalize_transcript`: lower case, no punctuation, numerals spelled out,
   so "5" and "five" are one word); a word is written as its most frequent lower-case
   spelling as heard, else its most frequent spelling with letters, else as normalised;
3. the gate: the glossary must make up at least `COVERAGE` of all the confident words heard
   in the batch (`coverage`), i.e. the batch is dominated by a small recurring vocabulary
   (digits, commands, codes, names called out). Otherwise nothing more is done: a prompt
   of a few words that merely recur on ordinary speech makes Whisper tiny.en copy it
   (20 spoken OpenClipart captions: glossary "Step, points." from four "star polygon with
   N points, step M" captions, 20 % of the confident words; WER 0.489 -> 0.822 ungated,
   "math lsup, icon, action" -> "Step 1 Step 4 Step 4 ..."). 16 files of four FSDD digits
   (tests/tasks/test_batch_context.py) pass the gate; 12 files of four gave 0.41, 88 files
   of av-digits-video 0.90-0.92: the threshold (a third) sits between these few cases;
4. every file with a word below `CONFIDENT` (or with no words) is decoded again with the
   glossary as Whisper's initial prompt ("Five, four, three, ..."; after ``prompt`` when one
   is given) and that decode replaces the first.

It uses nothing but the audio given: no vocabulary is supplied by anyone. A file's
transcript depends on the other files of the batch, and the cost is up to two decodes per
file. av-digits-video test split (88 clips, 399 words, scripts/subtitle_accuracy.py): word
accuracy 0.744 -> 0.917 and 0.910 in two runs (coverage about 0.9; Whisper's
temperature fallback samples, so runs differ).
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Sequence

from polymodal.tasks.subtitles import Word

CONTEXTS = ("none", "batch")
CONFIDENT = 0.5  # a word Whisper gives at least this probability counts as recognised
MIN_FILES = 3  # a glossary word is recognised in at least this many files ...
MIN_SHARE = 0.05  # ... and in at least this share of the batch
MAX_WORDS = 40  # the longest glossary (Whisper keeps at most 223 prompt tokens)
COVERAGE = 1 / 3  # ... and its words are at least this share of all confident words heard
_STRIP = re.compile(r"[^\w'-]+")


def glossary(files: Sequence[Sequence[Word]], confident: float = CONFIDENT,
             min_files: int = MIN_FILES, min_share: float = MIN_SHARE,
             max_words: int = MAX_WORDS) -> list[str]:
    """The words recognised with confidence across ``files`` (one list of `Word` s a file; see
    the module docstring), most files first (ties: first seen)."""
    from polymodal.metrics.textgen import normalize_transcript

    in_files: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    for words in files:
        seen: dict[str, None] = {}  # in order heard: ties are ordered by the first seen
        for w in words:
            if w.probability is None or w.probability < confident:
                continue
            heard = _STRIP.sub("", w.text)
            key = normalize_transcript(w.text)
            if heard and key:
                spellings[key][heard] += 1
                seen[key] = None
        in_files.update(list(seen))
    need = max(min_files, min_share * len(files))
    out = []
    for key, n in in_files.most_common():
        if n < need or len(out) >= max_words:
            break
        sp = spellings[key]
        lower = [s for s, _ in sp.most_common() if s.isalpha() and s == s.lower()]
        letters = [s for s, _ in sp.most_common() if any(c.isalpha() for c in s)]
        out.append(lower[0] if lower else letters[0] if letters else key)
    return out


def coverage(files: Sequence[Sequence[Word]], words: Sequence[str],
             confident: float = CONFIDENT) -> float:
    """The share of the confident words heard in ``files`` (after the normaliser) that are
    among ``words``; 0 where none is confident."""
    from polymodal.metrics.textgen import normalize_transcript

    keys = {normalize_transcript(w) for w in words}
    heard = [k for ws in files for w in ws
             if w.probability is not None and w.probability >= confident
             and (k := normalize_transcript(w.text))]
    return sum(k in keys for k in heard) / len(heard) if heard else 0.0


def context_prompt(words: Sequence[str], prompt: str | None = None) -> str | None:
    """The second pass's initial prompt: ``prompt`` (if any), then the glossary as a list
    ("Five, four, three."); None when both are empty."""
    parts = [prompt.strip()] if prompt and prompt.strip() else []
    if words:
        text = ", ".join(words) + "."
        parts.append(text[0].upper() + text[1:])
    return " ".join(parts) or None


def needs_second_pass(words: Sequence[Word], confident: float = CONFIDENT) -> bool:
    """Is any word below ``confident`` (or are there no words)?"""
    return not words or any(w.probability is not None and w.probability < confident
                            for w in words)


__all__ = ["CONFIDENT", "CONTEXTS", "COVERAGE", "MAX_WORDS", "MIN_FILES", "MIN_SHARE",
           "context_prompt", "coverage", "glossary", "needs_second_pass"]
