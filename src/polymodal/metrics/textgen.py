"""Text-generation metrics: BLEU-1..4 (sacrebleu), CIDEr-D, ROUGE-L and word error rate.

Every metric compares each hypothesis with ALL references of its item (a variable number per
item). Captions are first normalised with `caption_tokens` (lower case, words only), the way the
COCO caption toolkit's PTB tokenizer strips punctuation, so hypotheses and references are scored
on the same footing.

CIDEr-D follows the reference implementation (coco-caption ``pyciderevalcap/ciderD``, Vedantam
et al. 2015): n = 1..4, TF-IDF n-gram vectors whose document frequencies come from the
references of the evaluated corpus (an n-gram counts once per item),
``idf = log(N) - log(max(1, df))``, hypothesis tf clipped at the reference tf, cosine per n,
a Gaussian length penalty ``exp(-(l_h - l_r)^2 / (2 * 6^2))``, averaged over n and references
and multiplied by 10. As in that code the "length" of a sentence is its number of bigrams.
ROUGE-L follows coco-caption ``rouge.py``: LCS-based precision and recall, each the maximum
over references, combined as an F-measure with beta = 1.2.
"""
from __future__ import annotations

import functools
import math
import re
from collections import Counter
from typing import Callable, Sequence

import numpy as np

from polymodal.core.errors import PolymodalError, UsageError

CIDER_SIGMA = 6.0
ROUGE_BETA = 1.2
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def caption_tokens(text: str) -> list[str]:
    """Lower-case word tokens; punctuation dropped ("A cat, sitting." -> [a, cat, sitting])."""
    return _WORD_RE.findall(str(text).lower())


def normalize_caption(text: str) -> str:
    """`caption_tokens` joined by single spaces."""
    return " ".join(caption_tokens(text))


def _check(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[list[str]]:
    if len(hyps) != len(refs):
        raise UsageError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    if not hyps:
        raise UsageError("no hypotheses to score")
    out = []
    for i, r in enumerate(refs):
        rs = [r] if isinstance(r, str) else [x for x in r if x is not None and str(x).strip()]
        if not rs:
            raise UsageError(f"item {i} has no reference")
        out.append([normalize_caption(x) for x in rs])
    return out


def bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], max_order: int = 4
         ) -> dict[str, float]:
    """Corpus BLEU-1..``max_order`` (0-100) with sacrebleu, all references per item. Items with
    fewer references are padded with ``None``, which sacrebleu skips."""
    from sacrebleu.metrics import BLEU

    ref_sets = _check(hyps, refs)
    hyp = [normalize_caption(h) for h in hyps]
    k = max(len(r) for r in ref_sets)
    streams = [[r[j] if j < len(r) else None for r in ref_sets] for j in range(k)]
    out = {}
    for n in range(1, max_order + 1):
        scorer = BLEU(max_ngram_order=n, tokenize="none", effective_order=False)
        out[f"BLEU-{n}"] = float(scorer.corpus_score(hyp, streams).score)
    return out


def ngram_counts(tokens: list[str], n_max: int = 4) -> Counter:
    """Counts of every 1- to ``n_max``-gram of ``tokens`` (tuples as keys)."""
    c: Counter = Counter()
    for n in range(1, n_max + 1):
        for i in range(len(tokens) - n + 1):
            c[tuple(tokens[i:i + n])] += 1
    return c


def tfidf_vector(counts: Counter, df: Counter, log_n: float, n_max: int
                 ) -> tuple[list[dict], np.ndarray, int]:
    """CIDEr-D's tf-idf of n-gram ``counts`` (document frequencies ``df``, ``log_n`` = log of the
    number of reference sets): per n the vector and its norm, and the length (in bigrams, as the
    reference code measures it); the input of `cider_pair`."""
    vec: list[dict] = [{} for _ in range(n_max)]
    norm = np.zeros(n_max)
    length = 0
    for gram, tf in counts.items():
        n = len(gram) - 1
        v = float(tf) * (log_n - math.log(max(1.0, df[gram])))
        vec[n][gram] = v
        norm[n] += v * v
        if n == 1:  # the reference code measures length in bigrams
            length += tf
    return vec, np.sqrt(norm), length


def cider_d_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]], n_max: int = 4,
                   sigma: float = CIDER_SIGMA) -> np.ndarray:
    """CIDEr-D of each hypothesis (see the module docstring for the exact definition)."""
    ref_sets = _check(hyps, refs)
    h_counts = [ngram_counts(caption_tokens(h), n_max) for h in hyps]
    r_counts = [[ngram_counts(r.split(), n_max) for r in rs] for rs in ref_sets]
    df: Counter = Counter()
    for rs in r_counts:
        df.update(set(g for c in rs for g in c))
    log_n = math.log(float(len(r_counts)))
    scores = np.zeros(len(hyps))
    for i, (hc, rcs) in enumerate(zip(h_counts, r_counts)):
        vh = tfidf_vector(hc, df, log_n, n_max)
        total = sum(cider_pair(vh, tfidf_vector(rc, df, log_n, n_max), sigma) for rc in rcs)
        scores[i] = total / n_max / len(rcs) * 10.0
    return scores


def cider_pair(hyp, ref, sigma: float = CIDER_SIGMA) -> float:
    """The CIDEr-D similarity of one hypothesis and one reference, summed over n-gram orders
    (not yet averaged, nor scaled by 10): clipped tf-idf dot product over the norms, times the
    length penalty. ``hyp`` / ``ref``: `tfidf_vector` results ``(vectors, norms, length)``."""
    (vh, nh, lh), (vr, nr, lr) = hyp, ref
    pen = math.exp(-((lh - lr) ** 2) / (2 * sigma ** 2))
    total = 0.0
    for n in range(len(vh)):
        dot = sum(min(v, vr[n].get(g, 0.0)) * vr[n].get(g, 0.0) for g, v in vh[n].items())
        if nh[n] != 0 and nr[n] != 0:
            dot /= nh[n] * nr[n]
        total += dot * pen
    return total


def cider_d(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D: the mean of `cider_d_scores`."""
    return float(cider_d_scores(hyps, refs).mean())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]], beta: float = ROUGE_BETA
                   ) -> np.ndarray:
    """ROUGE-L F-measure of each hypothesis against its references (max precision and max
    recall over the references, as in coco-caption)."""
    ref_sets = _check(hyps, refs)
    out = np.zeros(len(hyps))
    for i, (h, rs) in enumerate(zip(hyps, ref_sets)):
        ht = caption_tokens(h)
        if not ht:
            continue
        prec, rec = [], []
        for r in rs:
            rt = r.split()
            lcs = lcs_length(ht, rt)
            prec.append(lcs / len(ht))
            rec.append(lcs / len(rt) if rt else 0.0)
        p, r_ = max(prec), max(rec)
        if p > 0 and r_ > 0:
            out[i] = (1 + beta ** 2) * p * r_ / (r_ + beta ** 2 * p)
    return out


def rouge_l(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Corpus ROUGE-L: the mean of `rouge_l_scores`."""
    return float(rouge_l_scores(hyps, refs).mean())


def caption_metrics(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU-1..4 (0-100), CIDEr-D (as the reference code returns it; papers often print it
    x100) and ROUGE-L (0-1)."""
    out = bleu(hyps, refs)
    out["CIDEr-D"] = cider_d(hyps, refs)
    out["ROUGE-L"] = rouge_l(hyps, refs)
    return out


def normalize_transcript(text: str) -> str:
    """Lower case, punctuation removed, digits spelled out ("7." -> "seven", "10" -> "one
    zero"), whitespace collapsed: the form WER compares."""
    text = str(text).lower().replace("-", " ")
    text = re.sub(r"\d", lambda m: f" {DIGIT_WORDS[int(m.group())]} ", text)
    return " ".join(caption_tokens(text))


WER_NORMALIZERS = ("default", "whisper", "none")


def transcript_normalizer(name: str | bool = "default") -> Callable[[str], str]:
    """The text normaliser WER applies: ``default`` (`normalize_transcript`: digits spelled
    out), ``whisper`` (Whisper's ``EnglishTextNormalizer``, from the package
    whisper-normalizer: numbers written as digits, British spellings made American,
    contractions expanded, fillers and bracketed text dropped) or ``none`` (split on spaces)."""
    name = {True: "default", False: "none"}.get(name, name) if isinstance(name, bool) else name
    if name == "default":
        return normalize_transcript
    if name == "none":
        return lambda s: " ".join(str(s).split())
    if name == "whisper":
        return _whisper_normalizer()
    raise UsageError(f"unknown WER normaliser '{name}'; valid: {', '.join(WER_NORMALIZERS)}")


@functools.lru_cache(maxsize=1)
def _whisper_normalizer() -> Callable[[str], str]:
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError:
        raise PolymodalError("--normalize whisper needs the package whisper-normalizer "
                             "(pip install 'polymodal[speech]')") from None
    return EnglishTextNormalizer()


def word_error_rate(hyps: Sequence[str], refs: Sequence[str], normalize: bool | str = True
                    ) -> float:
    """Corpus WER with jiwer (errors / reference words), after the normaliser ``normalize``
    names (`transcript_normalizer`; True = ``default``, False = ``none``)."""
    import jiwer

    if len(hyps) != len(refs):
        raise UsageError(f"{len(hyps)} transcripts but {len(refs)} references")
    if not refs:
        raise UsageError("no references to score")
    f = transcript_normalizer(normalize)
    r = [f(x) for x in refs]
    if any(not x for x in r):
        raise UsageError("a reference transcript is empty after normalisation")
    h = [f(x) for x in hyps]
    return float(jiwer.wer(r, h))
