"""OpenClipart with spoken captions: image, text and audio of the same drawing (three
modalities, for audio -> image retrieval and speech-as-a-bridge experiments).

Rows, captions, labels, ``caption_group`` and the FIXED split are exactly those of the
``openclipart`` builder (`caption_rows`). Each drawing's main caption is synthesised offline
(`polymodal.data.speech`) by one of ``voices`` at one of ``rates``, drawn per row from a
generator seeded by ``seed`` and the drawing id (so a row keeps its voice whatever ``limit``
is), and written as 16 kHz 16-bit WAV ``audio/<digest of voice, rate, text>.wav``. Identical
(voice, rate, caption) triples share one file; a rebuild into the same folder reuses the
files of the previous build (same name = same samples). Columns added: ``audio``, ``voice``,
``rate``. Deterministic: the default espeak voices have no flutter (`polymodal.data.speech`), and
Piper runs without generator noise.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from pathlib import Path

from polymodal.core.errors import UsageError
from polymodal.data.datasets._common import (OutputFolder, as_list, bar, check_limit, rel, say,
                                             split_counts)

DEFAULT_VOICES = "piper:en_US-joe-medium,espeak:en-us+Diogo,espeak:en-gb+Hugo"
DEFAULT_RATES = "0.9,1.0,1.2"
SAMPLE_RATE = 16000


def _choice(seed: int, key: str, n: int) -> tuple[int, int]:
    h = hashlib.sha1(f"{seed}\x00{key}".encode("utf-8")).digest()
    return int.from_bytes(h[:4], "big") % n, int.from_bytes(h[4:8], "big")


def build_openclipart_spoken(source: Path, out: Path, seed: int = 0, progress: bool = True,
                             limit: int | None = None, voices: str = DEFAULT_VOICES,
                             rates: str = DEFAULT_RATES) -> Path:
    """Write the spoken OpenClipart manifest (see the module docstring). ``limit`` keeps the
    first N drawings; ``voices`` / ``rates`` are comma lists (`polymodal speak
    --list-voices`)."""
    from polymodal.data.audio import resample
    from polymodal.data.datasets.openclipart import caption_rows, find_openclipart, load_captions
    from polymodal.data.speech import check_request, clip_name, split_voice, synthesize, write_wav

    limit = check_limit(limit)
    voice_list, rate_list = as_list(voices) or [], _rates(rates)
    if not voice_list:
        raise UsageError("option voices: give at least one voice, e.g. voices=espeak:en-us")
    for v in voice_list:
        split_voice(v)  # unknown voice / missing engine: before any work
    for r in rate_list:
        check_request("x", r)
    folder = find_openclipart(source)
    raw = load_captions(folder)
    rows = caption_rows(raw)[:limit] if limit else caption_rows(raw)
    with OutputFolder(out) as od:
        previous = od.out / "audio"
        audio_dir = od.stage("audio")
        made = reused = 0
        for r in bar(rows, progress, "openclipart-spoken"):
            vi, ri = _choice(seed, r["id"], len(voice_list))
            voice, rate = voice_list[vi], rate_list[ri % len(rate_list)]
            text = check_request(r["text"][0], rate)
            name = clip_name(text, voice, rate)
            dest = audio_dir / name
            if not dest.exists():
                if (previous / name).is_file():
                    _link_or_copy(previous / name, dest)
                    reused += 1
                else:
                    wav, sr = synthesize(text, voice, rate)
                    write_wav(dest, resample(wav, sr, SAMPLE_RATE), SAMPLE_RATE)
                    made += 1
            src = folder / r["image"]
            r.update(image=rel(src, od.out), audio=f"audio/{name}", voice=voice, rate=rate)
        counts = split_counts(rows)
        info = {"name": "openclipart-spoken", "source": str(folder), "seed": seed,
                "rows": len(rows), "splits": counts, "split_rule": "as openclipart (fixed)",
                "voices": voice_list, "rates": rate_list,
                "voice_counts": dict(Counter(r["voice"] for r in rows)),
                "audio_files": made + reused, "synthesised": made, "reused": reused,
                "media_dirs": ["audio"]}
        path = od.commit(rows, info)
    say(f"openclipart-spoken: {len(rows)} drawings -> {path} (train {counts['train']}, val "
        f"{counts['val']}, test {counts['test']}); {made} clips synthesised, {reused} reused; "
        f"voices {', '.join(voice_list)} at rates {', '.join(f'{x:g}' for x in rate_list)}",
        progress)
    return path


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _rates(rates: str) -> list[float]:
    out = []
    for r in as_list(rates) or []:
        try:
            out.append(float(r))
        except ValueError:
            raise UsageError(f"option rates: '{r}' is not a number") from None
    if not out:
        raise UsageError("option rates: give at least one rate, e.g. rates=1.0")
    return out
