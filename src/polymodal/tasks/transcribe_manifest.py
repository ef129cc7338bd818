"""A manifest's audio column -> a transcript column (`transcribe_manifest`), and the WER of
transcripts (`transcript_wer`)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from polymodal.core.errors import UsageError

if TYPE_CHECKING:
    from polymodal.tasks.transcribe import TranscribeResult


def transcribe_manifest(manifest: str | Path, out: str | Path, column: str = "transcript",
                        columns: dict[str, str] | None = None, beam: int = 1,
                        progress: bool = True, backend: str = "auto",
                        precision: str = "auto") -> TranscribeResult:
    """Transcribe a manifest's audio column into a copy with a new ``column`` (atomic write).
    Rows without audio or with audio that does not decode get an empty cell (reported)."""
    from polymodal.data.manifest import read_manifest

    man = read_manifest(manifest, columns=columns)
    if "audio" not in man.modalities:
        raise UsageError(f"{manifest}: no audio column to transcribe")
    recs = [r for r in man.records if r.audio is not None]
    from polymodal.tasks.transcribe import transcribe

    res = transcribe([r.audio for r in recs], beam=beam, progress=progress, backend=backend,
                     precision=precision,
                     rows=[r.row for r in recs], file=str(man.path), column=man.column_of("audio"))
    by_row = {r.row: t for r, t in zip(recs, res.texts)}
    from polymodal.data.manifest import MEDIA, copy_with_columns

    media = [man.column_of(m) for m in MEDIA if m in man.modalities]
    copy_with_columns(Path(manifest), Path(out), {column: by_row}, media)
    return res


def transcript_wer(hyps: Sequence[str | None], refs: Sequence[str],
                   normalize: str = "default") -> float:
    """WER over the items that have a transcript, after the normaliser ``normalize`` (default:
    digits spelled out, punctuation dropped; ``whisper``: Whisper's English normaliser; see
    `polymodal.metrics.textgen.transcript_normalizer`)."""
    from polymodal.metrics.textgen import word_error_rate

    pairs = [(h, r) for h, r in zip(hyps, refs) if h is not None]
    if not pairs:
        raise UsageError("no transcripts to score")
    return word_error_rate([h for h, _ in pairs], [r for _, r in pairs], normalize=normalize)


__all__ = ["transcribe_manifest", "transcript_wer"]
