"""Speech -> text with the bundled Whisper tiny.en (CTranslate2, through faster-whisper), offline.

Clips are decoded to 16 kHz mono (`WhisperEncoder.prepare`), turned into Whisper's 30 s log-mel
window and decoded in batches with CTranslate2's ``Whisper.generate`` (greedy by default,
no timestamps, English). Batching the whole window is several times faster on a CPU than
calling ``WhisperModel.transcribe`` once per clip, and for clips under 30 s gives the same
first-window text. Only the first 30 s of a clip are transcribed (longer clips get a warning).

``transcribe_manifest`` writes a copy of a manifest with a new transcript column (atomic);
audio that does not decode leaves the cell empty and is reported with its row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from polymodal.core.errors import PolymodalError, Problem, UsageError

MAX_SECONDS = 30.0


@dataclass
class TranscribeResult:
    """Transcripts (None where the audio could not be decoded) and the problems met."""

    texts: list[str | None]
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> int:
        return sum(t is not None for t in self.texts)


class Transcriber:
    """Batched greedy / beam decoding with Whisper tiny.en (see the module docstring)."""

    def __init__(self, model_dir: str | Path | None = None, beam: int = 1, batch_size: int = 8,
                 max_tokens: int = 96, threads: int | None = None):
        from faster_whisper.tokenizer import Tokenizer

        from polymodal.features.encoders.whisper import WhisperEncoder

        if beam < 1 or batch_size < 1 or max_tokens < 1:
            raise UsageError("beam, batch_size and max_tokens must be at least 1")
        self.encoder = WhisperEncoder(model_dir, threads=threads)
        w = self.encoder.whisper
        self.tokenizer = Tokenizer(w.hf_tokenizer, w.model.is_multilingual, task="transcribe",
                                   language="en")
        self.prompt = list(self.tokenizer.sot_sequence) + [self.tokenizer.no_timestamps]
        self.beam, self.batch_size, self.max_tokens = beam, batch_size, max_tokens

    @property
    def id(self) -> str:
        return f"whisper-tiny.en|{self.encoder.model_dir.name}|beam={self.beam}|greedy-window"

    def load(self, path: str | Path) -> np.ndarray:
        """16 kHz mono waveform of one file (raises `DecodeError`)."""
        return self.encoder.prepare(path)

    def transcribe_waves(self, waves: Sequence[np.ndarray]) -> list[str]:
        """Text of each 16 kHz waveform (first 30 s)."""
        out: list[str] = []
        for s in range(0, len(waves), self.batch_size):
            feats = np.stack([self.encoder.log_mel(w)[0] for w in waves[s:s + self.batch_size]])
            import ctranslate2

            res = self.encoder.whisper.model.generate(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(feats, np.float32)),
                [self.prompt] * len(feats), beam_size=self.beam, max_length=self.max_tokens,
                suppress_blank=True)
            for r in res:
                ids = [t for t in r.sequences_ids[0] if t < self.tokenizer.eot]
                out.append(self.tokenizer.decode(ids).strip())
        return out


def transcribe(paths: Sequence[str | Path], transcriber: Transcriber | None = None,
               progress: bool = True, rows: Sequence[int] | None = None,
               file: str | None = None, column: str | None = None) -> TranscribeResult:
    """Transcribe audio files. Files that do not decode give ``None`` and a `Problem`
    (``rows`` / ``file`` / ``column`` locate it in a manifest); the rest go on."""
    import time

    t0 = time.perf_counter()
    tr = transcriber or Transcriber()
    texts: list[str | None] = [None] * len(paths)
    problems: list[Problem] = []
    bar = tqdm(total=len(paths), desc="transcribe", unit="clip", disable=not progress,
               dynamic_ncols=True)
    todo: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        got = tr.transcribe_waves([w for _, w in todo])
        for (i, _), t in zip(todo, got):
            texts[i] = t
        bar.update(len(todo))
        todo.clear()

    for i, p in enumerate(paths):
        row = rows[i] if rows is not None else None
        try:
            info_seconds = _duration(p)
            wav = tr.load(p)
        except PolymodalError as e:
            problems.append(Problem(file or str(p), row, column,
                                    getattr(e, "reason", None) or str(e)))
            bar.update(1)
            continue
        if info_seconds > MAX_SECONDS:
            problems.append(Problem(file or str(p), row, column, f"audio is {info_seconds:.0f} s;"
                                    f" only the first {MAX_SECONDS:.0f} s were transcribed",
                                    level="warning"))
        todo.append((i, wav))
        if len(todo) >= tr.batch_size:
            flush()
    if todo:
        flush()
    bar.close()
    return TranscribeResult(texts, problems, time.perf_counter() - t0)


def _duration(path: str | Path) -> float:
    from polymodal.data.loaders import probe_audio

    info = probe_audio(path)
    return info.frames / max(1, info.sample_rate)


def transcribe_manifest(manifest: str | Path, out: str | Path, column: str = "transcript",
                        columns: dict[str, str] | None = None, beam: int = 1,
                        progress: bool = True) -> TranscribeResult:
    """Transcribe a manifest's audio column into a copy with a new ``column`` (atomic write).
    Rows without audio or with audio that does not decode get an empty cell (reported)."""
    from polymodal.data.manifest import read_manifest

    man = read_manifest(manifest, columns=columns)
    if "audio" not in man.modalities:
        raise UsageError(f"{manifest}: no audio column to transcribe")
    recs = [r for r in man.records if r.audio is not None]
    res = transcribe([r.audio for r in recs], Transcriber(beam=beam), progress=progress,
                     rows=[r.row for r in recs], file=str(man.path), column=man.column_of("audio"))
    by_row = {r.row: t for r, t in zip(recs, res.texts)}
    media = [man.column_of(m) for m in ("image", "audio") if m in man.modalities]
    _write_with_column(Path(manifest), Path(out), column, by_row, media)
    return res


def _write_with_column(src: Path, out: Path, column: str, by_row: dict[int, str | None],
                       media: Sequence[str]) -> Path:
    """Copy the manifest ``src`` to ``out`` (JSONL, or CSV when ``out`` ends in .csv) adding
    ``column`` (rows numbered as `read_manifest` numbers them); relative media paths are
    rewritten relative to ``out``'s folder."""
    from polymodal.data.manifest import _read_rows, write_manifest

    _, rows = _read_rows(src)
    recs = []
    for n, raw in rows:
        rec = dict(raw)
        if out.resolve().parent != src.resolve().parent:
            for c in media:
                if c in rec:
                    rec[c] = _rebase(rec[c], src.parent, out.parent)
        rec[column] = by_row.get(n)
        recs.append(rec)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_manifest(recs, out)


def _rebase(v: Any, old: Path, new: Path) -> Any:
    import os

    if not isinstance(v, str) or not v or "://" in v or Path(v).is_absolute():
        return v
    return os.path.relpath((old / v).resolve(), new.resolve())


def transcript_wer(hyps: Sequence[str | None], refs: Sequence[str]) -> float:
    """WER (digits spelled out, punctuation dropped) over the items that have a transcript."""
    from polymodal.metrics.textgen import word_error_rate

    pairs = [(h, r) for h, r in zip(hyps, refs) if h is not None]
    if not pairs:
        raise UsageError("no transcripts to score")
    return word_error_rate([h for h, _ in pairs], [r for _, r in pairs])


__all__ = ["TranscribeResult", "Transcriber", "transcribe", "transcribe_manifest",
           "transcript_wer"]
