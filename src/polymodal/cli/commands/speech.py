"""``polymodal speak``: text -> speech (one text, or a manifest's text column)."""
from __future__ import annotations

import argparse
from typing import Callable

from polymodal.cli.commands.common import print_problems
from polymodal.core.errors import UsageError


def add_commands(add: Callable) -> None:
    """The ``speak`` command's parser (``add`` is `build_parser`'s helper)."""
    from polymodal.data import limits
    from polymodal.data.speech import DEFAULT_VOICE

    s = add("speak", cmd_speak, "text to speech, offline (espeak-ng; a Piper neural voice with "
            "polymodal[speech-neural]): one text to a WAV, or a manifest's text column to WAVs "
            "+ a manifest with an audio column")
    s.add_argument("text", nargs="?", help="the text to say (or --manifest)")
    s.add_argument("--out", help="WAV to write (a text) or manifest to write (--manifest)")
    s.add_argument("--voice", default=DEFAULT_VOICE, help="espeak:<voice>[+<variant>] or "
                   f"piper:<voice> (default {DEFAULT_VOICE}; see --list-voices)")
    s.add_argument("--rate", type=float, default=1.0, help="speed factor, 1 = normal "
                   f"({limits.MIN_SPEECH_RATE:g} to {limits.MAX_SPEECH_RATE:g})")
    s.add_argument("--manifest", help="speak this manifest's --column into WAVs")
    s.add_argument("--column", default="text", help="with --manifest: the text column")
    s.add_argument("--audio-column", default="audio", help="with --manifest: the new column")
    s.add_argument("--audio-dir", help="with --manifest: folder for the WAVs (default: audio/ "
                   "next to --out)")
    s.add_argument("--list-voices", action="store_true", help="list the voices and rates")


def cmd_speak(a: argparse.Namespace) -> int:
    from polymodal.tasks.speak import speak_manifest, speak_text

    if a.list_voices:
        return _list_voices()
    if bool(a.manifest) == bool(a.text):
        raise UsageError("give a text or --manifest (not both)")
    if not a.out:
        raise UsageError("--out is required (a .wav for a text, a manifest for --manifest)")
    if a.text:
        path, seconds = speak_text(a.text, a.out, voice=a.voice, rate=a.rate)
        print(f"wrote {path} ({seconds:.2f} s, voice {a.voice}, rate {a.rate:g})")
        return 0
    res = speak_manifest(a.manifest, a.out, column=a.column, voice=a.voice, rate=a.rate,
                         audio_column=a.audio_column, audio_dir=a.audio_dir,
                         progress=not a.quiet)
    print(f"spoke {res.written} new clips ({res.audio_seconds:.1f} s of audio; {res.reused} "
          f"reused) in {res.seconds:.1f} s; written: {res.out} (column '{a.audio_column}')")
    if res.problems:
        print(f"skipped {len(res.problems)} rows:")
        print_problems(res.problems, 10)
    return 0


def _list_voices() -> int:
    from polymodal.data import limits
    from polymodal.data.speech import ESPEAK_WPM, list_voices

    voices = list_voices()
    if not voices:
        raise UsageError("no speech engine installed: pip install 'polymodal[speech]' "
                         "(espeak-ng) or 'polymodal[speech-neural]' (Piper)")
    plain = [v for v in voices if "+" not in v.name]
    variants = sorted({v.name.split("+", 1)[1] for v in voices if "+" in v.name})
    for v in plain:
        print(f"{v.name:<28} {v.language:<16} {v.description}")
    if variants:
        print(f"espeak variants (add to any espeak voice, e.g. espeak:en-us+{variants[0]}): "
              + ", ".join(variants))
    print(f"rates: {limits.MIN_SPEECH_RATE:g} to {limits.MAX_SPEECH_RATE:g} (speed factor; 1 = "
          f"normal: espeak {ESPEAK_WPM} words/min, Piper length scale 1)")
    return 0
