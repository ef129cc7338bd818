"""The loops of `polymodal.tasks.transcribe.transcribe`: batched chunk cues (`run_chunks`) and
word-timed cues (`run_words`, with the optional batch context of `tasks.batch_context`)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from polymodal.core.errors import PolymodalError
from polymodal.tasks.subtitles import Segment, Word, word_cues


def run_chunks(paths: Sequence[Any], usable: list[int], tr: Any, res: Any, fail: Any,
               progress: bool) -> None:
    """One segment per short clip (decoded in batches) / pause-cut chunk of longer audio."""
    from polymodal.tasks.transcribe import SAMPLE_RATE, WINDOW_SECONDS, is_video

    bar = tqdm(total=len(usable), desc="transcribe", unit="clip", disable=not progress,
               dynamic_ncols=True)
    todo: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        for (i, _), t in zip(todo, tr.transcribe_waves([w for _, w in todo])):
            res.texts[i] = t
            res.segments[i] = [Segment(0.0, float(res.durations[i] or 0.0), t)] if t else []
        bar.update(len(todo))
        todo.clear()

    for i in usable:
        try:
            if is_video(paths[i]):  # the audio track, decoded whole (<= MAX_VIDEO_SECONDS)
                from polymodal.data.video import read_audio_track

                wav = read_audio_track(paths[i], SAMPLE_RATE, max_seconds=None)
                segs = tr.segments(wav) if len(wav) > WINDOW_SECONDS * SAMPLE_RATE else None
                if segs is None:
                    todo.append((i, wav))
                else:
                    res.segments[i] = segs
                    res.texts[i] = " ".join(s.text for s in segs if s.text)
                    bar.update(1)
            elif (res.durations[i] or 0.0) > WINDOW_SECONDS:
                segs = tr.transcribe_long(paths[i])
                res.segments[i] = segs
                res.texts[i] = " ".join(s.text for s in segs if s.text)
                bar.update(1)
            else:
                todo.append((i, tr.load(paths[i])))
        except PolymodalError as e:
            fail(i, getattr(e, "reason", None) or str(e))
            bar.update(1)
            continue
        if len(todo) >= tr.batch_size:
            flush()
    if todo:
        flush()
    bar.close()


def run_words(paths: Sequence[Any], usable: list[int], tr: Any, res: Any, fail: Any,
              progress: bool, context: str = "none") -> None:
    """Cues from word times (`Transcriber.file_words`). ``context="batch"``: a second pass of
    the files with low-confidence words, prompted with the batch's glossary when it covers
    enough of the confident words (`tasks.batch_context`); ``res`` records the glossary, its
    coverage, the prompt used (None: no second pass) and how many files were decoded again."""
    from polymodal.tasks.batch_context import (COVERAGE, context_prompt, coverage, glossary,
                                               needs_second_pass)

    words: dict[int, list[Word]] = {}
    for i in tqdm(usable, desc="transcribe", unit="file", disable=not progress,
                  dynamic_ncols=True):
        try:
            words[i] = tr.file_words(paths[i], res.durations[i] or 0.0)
        except PolymodalError as e:
            fail(i, getattr(e, "reason", None) or str(e))
    if context == "batch" and words:
        gloss = glossary(list(words.values()))
        res.glossary = gloss
        res.coverage = coverage(list(words.values()), gloss) if gloss else 0.0
        prompt = (context_prompt(gloss, tr.initial_prompt)
                  if gloss and res.coverage >= COVERAGE else None)
        res.context_prompt = prompt
        again = [i for i, ws in words.items() if needs_second_pass(ws)] if prompt else []
        for i in tqdm(again, desc="context pass", unit="file", disable=not progress,
                      dynamic_ncols=True):
            try:
                words[i] = tr.file_words(paths[i], res.durations[i] or 0.0, prompt=prompt)
            except PolymodalError as e:  # decoded once already: only a file changed under us
                fail(i, getattr(e, "reason", None) or str(e))
                del words[i]
        res.second_pass = len(again)
    for i, ws in words.items():
        res.segments[i] = word_cues(ws)
        res.texts[i] = " ".join(w.text for w in ws)


__all__ = ["run_chunks", "run_words"]
