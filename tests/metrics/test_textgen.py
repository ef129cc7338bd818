"""Text-generation metrics against hand-computed cases."""
from __future__ import annotations

import math

import pytest

from polymodal.core.errors import UsageError
from polymodal.metrics.textgen import (bleu, caption_metrics, caption_tokens, cider_d,
                                    cider_d_scores, lcs_length, normalize_transcript, rouge_l,
                                    rouge_l_scores, word_error_rate)


def test_tokens_lowercase_and_strip_punctuation():
    assert caption_tokens("A Cat, sitting on the mat.") == ["a", "cat", "sitting", "on", "the",
                                                            "mat"]
    assert caption_tokens("don't stop") == ["don't", "stop"]


def test_bleu_identical_is_100_and_disjoint_is_0():
    hyps = ["a red bird on a tree", "the black cat sleeps"]
    refs = [["a red bird on a tree"], ["the black cat sleeps"]]
    assert bleu(hyps, refs)["BLEU-4"] == pytest.approx(100.0)
    assert bleu(["x y z w"], [["a b c d"]])["BLEU-1"] == 0.0


def test_bleu1_hand_computed_with_variable_reference_counts():
    # item 1: hyp "a b c d", refs ["a b x y", "c q"]; clipped unigram matches = a, b, c = 3/4
    # item 2: hyp "e f", ref ["e f"]: 2/2. Corpus precision = 5/6.
    # closest ref length: item 1 -> 4 (|4-4|=0), item 2 -> 2: r = 6 = c, so BP = 1.
    s = bleu(["a b c d", "e f"], [["a b x y", "c q"], ["e f"]])
    assert s["BLEU-1"] == pytest.approx(100 * 5 / 6)
    # BLEU-2: bigram precision: item 1 "a b" matches (1/3), item 2 "e f" (1/1) -> 2/4
    assert s["BLEU-2"] == pytest.approx(100 * math.sqrt(5 / 6 * 2 / 4))


def test_bleu_brevity_penalty():
    # hyp 2 words, ref 4 words: p1 = 1, BP = exp(1 - 4/2)
    assert bleu(["a b"], [["a b c d"]])["BLEU-1"] == pytest.approx(100 * math.exp(1 - 2))


def test_cider_identical_two_word_captions():
    # N = 2 items, every n-gram in one item: idf = log 2 for all. Hypothesis = reference:
    # unigram and bigram cosines are 1, tri/4-gram vectors are empty (0): mean 0.5, x10 = 5.
    s = cider_d_scores(["a b", "c d"], [["a b"], ["c d"]])
    assert s == pytest.approx([5.0, 5.0])


def test_cider_ngram_in_every_item_has_no_weight():
    # "the" occurs in the refs of both items: idf 0. Hyp 1 = "the" only -> score 0.
    s = cider_d_scores(["the", "the d"], [["the a"], ["the d"]])
    assert s[0] == pytest.approx(0.0)
    # item 2: unigram vectors: hyp {the:0, d:g}, ref {the:0, d:g} -> cosine 1; bigram
    # "the d": cosine 1 -> mean of [1, 1, 0, 0] x 10 = 5
    assert s[1] == pytest.approx(5.0)


def test_cider_clips_repeated_words():
    # hyp "a a" vs ref "a" (item 1), item 2 "b" keeps idf(a) = log 2 = g.
    # unigram: hyp tf-idf 2g, ref g: clipped min(2g, g) * g / (2g * g) = 0.5; bigram "a a" has
    # no match (0). Lengths in bigrams: hyp 1, ref 0 -> penalty exp(-1/72).
    s = cider_d_scores(["a a", "b"], [["a"], ["b"]])
    assert s[0] == pytest.approx(10 * (0.5 / 4) * math.exp(-1 / 72))


def test_cider_averages_over_references_and_length_penalty():
    # item 1 refs "a b" and "a b c c c c c c c c" ; hyp "a b". N = 2 with item 2 "z", so every
    # n-gram of item 1 has idf g = log 2 (g cancels in the cosines).
    # ref 1: identical -> [1, 1, 0, 0]
    # ref 2: unigram ref vec {a:g, b:g, c:8g}: dot = g^2 + g^2 = 2g^2, norms sqrt(2)g and
    #   sqrt(66)g -> 2/sqrt(132); bigram ref {ab:g, bc:g, cc:7g}: dot g^2, norms g and
    #   sqrt(51)g -> 1/sqrt(51); lengths (bigrams) 1 vs 9 -> exp(-64/72)
    pen = math.exp(-64 / 72)
    ref2 = (2 / math.sqrt(132) + 1 / math.sqrt(51)) * pen
    expected = 10 * ((2 + ref2) / 4) / 2
    s = cider_d_scores(["a b", "z"], [["a b", "a b c c c c c c c c"], ["z"]])
    assert s[0] == pytest.approx(expected)


def test_lcs_and_rouge_hand_computed():
    assert lcs_length("a b c d".split(), "a c e".split()) == 2
    # P = 2/4, R = 2/3, beta = 1.2
    p, r, b2 = 0.5, 2 / 3, 1.44
    assert rouge_l_scores(["a b c d"], [["a c e"]])[0] == pytest.approx((1 + b2) * p * r /
                                                                       (r + b2 * p))
    # max precision and max recall over references (they may come from different refs)
    # ref "a" -> P 1/4, R 1; ref "a b c d e f g h" -> P 1, R 1/2: max P = max R = 1 -> F = 1
    assert rouge_l(["a b c d"], [["a", "a b c d e f g h"]]) == pytest.approx(1.0)
    assert rouge_l(["x"], [["a b"]]) == 0.0


def test_caption_metrics_keys_and_ordering():
    refs = [["a small red car"], ["a big blue boat"], ["an old tree in the park"]]
    good = caption_metrics(["a small red car", "a big blue boat", "an old tree in park"], refs)
    bad = caption_metrics(["a boat", "a car", "a car"], refs)
    assert set(good) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D", "ROUGE-L"}
    for k in good:
        assert good[k] > bad[k], k


def test_metric_input_errors():
    with pytest.raises(UsageError, match="2 hypotheses but 1"):
        bleu(["a", "b"], [["a"]])
    with pytest.raises(UsageError, match="no reference"):
        cider_d(["a"], [[]])
    with pytest.raises(UsageError, match="no hypotheses"):
        rouge_l([], [])


def test_normalize_transcript_and_wer():
    assert normalize_transcript(" Seven.") == "seven"
    assert normalize_transcript("7") == "seven"
    assert normalize_transcript("It's 10!") == "it's one zero"
    assert word_error_rate(["Seven.", "2"], ["seven", "two"]) == 0.0
    # one substitution in 3 reference words
    assert word_error_rate(["one two four"], ["one two three"]) == pytest.approx(1 / 3)
    assert word_error_rate([""], ["five"]) == pytest.approx(1.0)
    with pytest.raises(UsageError):
        word_error_rate(["a"], [])
