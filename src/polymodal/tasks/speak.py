"""Text -> speech files: one text (`speak_text`) or a manifest's text column
(`speak_manifest`, a batch job). Engines and voices: `polymodal.data.speech`.

A manifest job writes one WAV per row into ``audio_dir`` (default: ``audio/`` next to the new
manifest), named by a digest of (voice, rate, text): the same sentence is synthesised once, and
a rerun after an interruption reuses the files already written (each is written atomically).
The new manifest is the old one plus an ``audio`` column (paths relative to it) and a ``voice``
column, written atomically last. Rows whose text is missing, empty or over the limit keep an
empty audio cell and are reported with their row (the job goes on).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from polymodal.core.errors import PolymodalError, Problem, UsageError
from polymodal.data.datasets._common import rel
from polymodal.data.speech import (DEFAULT_VOICE, check_request, clip_name, split_voice,
                                   synthesize, write_wav)


@dataclass
class SpeakResult:
    """What `speak_manifest` wrote: the manifest, the counts and the rows it skipped."""

    out: Path
    written: int = 0  # new WAV files
    reused: int = 0  # files already there (same voice, rate and text)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    audio_seconds: float = 0.0


def speak_text(text: str, out: str | Path, voice: str = DEFAULT_VOICE, rate: float = 1.0
               ) -> tuple[Path, float]:
    """Write ``text`` spoken by ``voice`` to the WAV ``out`` (atomic); returns (path, seconds)."""
    if Path(out).suffix.lower() != ".wav":
        raise UsageError(f"--out must be a .wav file, got {out}")
    wav, sr = synthesize(text, voice, rate)
    return write_wav(out, wav, sr), len(wav) / sr


def speak_manifest(manifest: str | Path, out: str | Path, column: str = "text",
                   voice: str = DEFAULT_VOICE, rate: float = 1.0,
                   audio_column: str = "audio", audio_dir: str | Path | None = None,
                   progress: bool = True) -> SpeakResult:
    """Speak the first text of ``column`` in every row of ``manifest`` into WAVs and write a
    copy of the manifest with the column ``audio_column`` (see the module docstring)."""
    from tqdm.auto import tqdm

    from polymodal.data.manifest import read_manifest
    from polymodal.data.readers import read_rows

    t0 = time.perf_counter()
    split_voice(voice)  # bad voice / rate: fail before reading anything
    check_request("x", rate)
    out = Path(out)
    if out.suffix.lower() not in (".jsonl", ".csv"):
        raise UsageError(f"--out must be a .jsonl or .csv manifest, got {out}")
    header, _ = read_rows(Path(manifest))
    if column not in header:
        raise UsageError(f"{manifest}: no column '{column}' (columns: {', '.join(header)})")
    if audio_column in header and audio_column != column:
        raise UsageError(f"{manifest} already has a column '{audio_column}'; name the new one "
                         f"with --audio-column")
    man = read_manifest(manifest, columns={"text": column})
    folder = Path(audio_dir) if audio_dir else out.parent / "audio"
    res = SpeakResult(out, problems=[p for p in man.problems if p.level == "error"])
    by_row: dict[int, str | None] = {}
    bar = tqdm(man.records, desc="speak", unit="row", disable=not progress, dynamic_ncols=True)
    for r in bar:
        text = r.text[0] if r.text else None
        if text is None:
            res.problems.append(Problem(str(man.path), r.row, column, "no text to speak"))
            continue
        try:
            text = check_request(text, rate)
            path = folder / clip_name(text, voice, rate)
            if path.is_file():
                res.reused += 1
            else:
                wav, sr = synthesize(text, voice, rate)
                write_wav(path, wav, sr)
                res.written += 1
                res.audio_seconds += len(wav) / sr
        except PolymodalError as e:
            res.problems.append(Problem(str(man.path), r.row, column, str(e)))
            continue
        by_row[r.row] = rel(path, out.parent)
    bar.close()
    from polymodal.data.manifest import MEDIA, copy_with_columns

    media = [man.column_of(m) for m in MEDIA if m in man.modalities]
    copy_with_columns(Path(manifest), out, {audio_column: by_row,
                                 "voice": {n: f"{voice}@{float(rate):g}" for n in by_row}}, media)
    res.seconds = time.perf_counter() - t0
    return res


__all__ = ["SpeakResult", "clip_name", "speak_manifest", "speak_text"]
