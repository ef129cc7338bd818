"""Free Spoken Digit Dataset (FSDD): spoken digits 0-9, split by speaker.

Source: a folder with ``recordings/{digit}_{speaker}_{index}.wav`` (and optionally
``speakers.json``). Recordings are *referenced* in place (paths relative to the manifest) rather
than copied, so the manifest breaks if the source folder moves; ``copy=True`` copies them into
``out/audio/`` instead.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polymodal.data.datasets._common import (DIGIT_WORDS, OutputFolder, as_list, bar,
                                             check_limit, find_source, rel, say, speaker_split,
                                             split_counts)
from polymodal.core.errors import PolymodalError

NAME_RE = re.compile(r"^([0-9])_([A-Za-z0-9-]+)_([0-9]+)\.wav$")
EXPECTED = "recordings/{digit}_{speaker}_{index}.wav files (Free Spoken Digit Dataset)"


@dataclass(frozen=True)
class Recording:
    """One FSDD recording, parsed from its file name."""

    path: Path
    digit: int
    speaker: str
    index: int

    @property
    def id(self) -> str:
        return self.path.stem


def find_fsdd(source: str | Path) -> Path:
    """The FSDD folder under ``source`` (itself or ``source/fsdd``), or a clear error."""
    return find_source(source, "fsdd", "fsdd", ["recordings/*.wav"], EXPECTED)


def list_recordings(folder: Path) -> list[Recording]:
    """All recordings of an FSDD folder, sorted by (digit, speaker, index)."""
    recs = []
    for p in (folder / "recordings").glob("*.wav"):
        m = NAME_RE.match(p.name)
        if m:
            recs.append(Recording(p, int(m.group(1)), m.group(2), int(m.group(3))))
    if not recs:
        raise PolymodalError(f"{folder / 'recordings'} has no file named like "
                             "{digit}_{speaker}_{index}.wav")
    return sorted(recs, key=lambda r: (r.digit, r.speaker, r.index))


def speaker_meta(folder: Path) -> dict[str, dict[str, Any]]:
    """speakers.json as a dict (empty when absent or unreadable)."""
    p = folder / "speakers.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def build_fsdd(source: Path, out: Path, seed: int = 0, progress: bool = True,
               limit: int | None = None, copy: bool = False,
               test_speakers: list[str] | str | None = None,
               val_speakers: list[str] | str | None = None) -> Path:
    """Write an FSDD manifest: audio, text (digit word), label (digit), speaker; split by
    speaker (about 4 train / 1 val / 1 test of 6, deterministic with ``seed``)."""
    limit = check_limit(limit)
    folder = find_fsdd(source)
    recs = list_recordings(folder)
    splits = speaker_split((r.speaker for r in recs), seed, as_list(test_speakers),
                           as_list(val_speakers))
    if limit is not None and limit < len(recs):
        import numpy as np

        keep = np.sort(np.random.default_rng(seed).choice(len(recs), limit, replace=False))
        recs = [recs[i] for i in keep]
    meta = speaker_meta(folder)
    with OutputFolder(out) as od:
        audio_dir = od.stage("audio") if copy else None
        rows = []
        for r in bar(recs, progress, "fsdd"):
            if audio_dir is not None:
                shutil.copyfile(r.path, audio_dir / r.path.name)
                audio = f"audio/{r.path.name}"
            else:
                audio = rel(r.path, od.out)
            row = {"id": r.id, "audio": audio, "text": DIGIT_WORDS[r.digit], "label": r.digit,
                   "split": splits[r.speaker], "speaker": r.speaker}
            for key in ("gender", "accent"):
                if isinstance(meta.get(r.speaker), dict) and key in meta[r.speaker]:
                    row[key] = meta[r.speaker][key]
            rows.append(row)
        counts = split_counts(rows)
        info = {"name": "fsdd", "source": str(folder), "seed": seed, "rows": len(rows),
                "splits": counts, "speakers": splits, "copied_audio": bool(copy),
                "media_dirs": ["audio"] if copy else []}
        path = od.commit(rows, info)
    by_split = {s: sorted(k for k, v in splits.items() if v == s) for s in ("train", "val", "test")}
    say(f"fsdd: {len(rows)} recordings -> {path} (train {counts['train']}, val {counts['val']}, "
        f"test {counts['test']}; test speakers {', '.join(by_split['test'])}, val speakers "
        f"{', '.join(by_split['val'])})", progress)
    return path
