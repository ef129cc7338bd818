"""Speech as a bridge: ``asr:<text encoder>`` encodes audio by what is said in it.

`WhisperDecoder` is the batched greedy / beam decoding of clips of at most one Whisper window
(30 s) with the bundled Whisper tiny.en (CTranslate2 ``Whisper.generate``, English, no
timestamps; with the default torch backend the encoder output comes from the silence-cached
window of `polymodal.features.encoders.whisper_torch` and CT2 int8 only decodes);
`polymodal.tasks.transcribe.Transcriber` extends it with long audio and subtitles.

`ASREncoder` (``asr:minilm``, ``asr:hf:<model>`` …) transcribes each clip (longer clips: one
transcript per 30-s window, joined; at most ``MAX_AUDIO_SECONDS``) and embeds the transcript
with the text encoder, so audio vectors live in that text encoder's space: an audio query can
be matched against texts with no training at all (``fit retrieval --bridge asr``). Its id
names the Whisper model, decoding and the text encoder's id, so the feature cache keys the
vectors by (file digest, ASR model, text encoder). The transcripts of the last batch stay in
``last_transcripts`` (the bridge reports them).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from polymodal.core.errors import UsageError
from polymodal.data import limits
from polymodal.features.encoders.backends import backend_id
from polymodal.features.encoders.base import encode_items

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_NUMBER_RE = re.compile(r"(?<![\w.])(?<!\d,)\d{1,2}(?!\w|[.,]\d)")


def spell_numbers(text: str) -> str:
    """Whole numbers 0-99 written as words ("7 red apples" -> "seven red apples"), the way
    captions and labels usually say them; Whisper writes spoken numbers as digits."""
    def word(m: re.Match) -> str:
        n = int(m.group())
        if n < 20:
            return _ONES[n]
        return _TENS[n // 10] + ("" if n % 10 == 0 else f"-{_ONES[n % 10]}")
    return _NUMBER_RE.sub(word, text)


MAX_PROMPT_TOKENS = 223  # Whisper keeps at most this much earlier text (half its 448 context)


def prompt_id(prompt: str | None) -> str:
    """``|prompt=<digest>`` for ids (empty without a prompt)."""
    if not prompt:
        return ""
    import hashlib

    return f"|prompt={hashlib.sha256(prompt.encode()).hexdigest()[:12]}"


class WhisperDecoder:
    """Whisper tiny.en speech -> text for 16 kHz clips of at most 30 s, in batches."""

    def __init__(self, model_dir: str | Path | None = None, beam: int = 1, batch_size: int = 8,
                 max_tokens: int = 96, threads: int | None = None, backend: str = "auto",
                 precision: str = "auto", initial_prompt: str | None = None):
        """``initial_prompt``: text Whisper reads as if said before each clip (its standard
        ``initial_prompt``: vocabulary and style to expect); None = no prompt."""
        from faster_whisper.tokenizer import Tokenizer

        from polymodal.features.encoders.whisper import WhisperEncoder

        if beam < 1 or batch_size < 1 or max_tokens < 1:
            raise UsageError("beam, batch_size and max_tokens must be at least 1")
        self.encoder = WhisperEncoder(model_dir, threads=threads, backend=backend,
                                      precision=precision)
        w = self.encoder.whisper
        self.tokenizer = Tokenizer(w.hf_tokenizer, w.model.is_multilingual, task="transcribe",
                                   language="en")
        self.initial_prompt = (initial_prompt or "").strip() or None
        prev = (self.tokenizer.encode(" " + self.initial_prompt)[-(MAX_PROMPT_TOKENS):]
                if self.initial_prompt else [])
        self.prompt = (([self.tokenizer.sot_prev] + prev if prev else [])
                       + list(self.tokenizer.sot_sequence) + [self.tokenizer.no_timestamps])
        self.prompt_extra = len(prev) + 1 if prev else 0  # earlier-text tokens + sot_prev
        self.beam, self.batch_size, self.max_tokens = beam, batch_size, max_tokens

    @property
    def model_id(self) -> str:
        return (f"whisper-tiny.en|{self.encoder.model_dir.name}|beam={self.beam}"
                f"{prompt_id(self.initial_prompt)}{backend_id(self.encoder.resolved)}")

    def transcribe_waves(self, waves: Sequence[np.ndarray]) -> list[str]:
        """Text of each 16 kHz waveform of at most one window (30 s)."""
        import ctranslate2

        out: list[str] = []
        for s in range(0, len(waves), self.batch_size):
            mels = [self.encoder.log_mel(w) for w in waves[s:s + self.batch_size]]
            inputs = self.encoder.decoder_input(np.stack([m for m, _ in mels]),
                                                [c for _, c in mels])
            res = self.encoder.whisper.model.generate(
                ctranslate2.StorageView.from_array(inputs),
                [self.prompt] * len(inputs), beam_size=self.beam,
                max_length=self.max_tokens + self.prompt_extra,
                suppress_blank=True)
            for r in res:
                ids = [t for t in r.sequences_ids[0] if t < self.tokenizer.eot]
                out.append(self.tokenizer.decode(ids).strip())
        return out


class ASREncoder:
    """``asr:<text encoder>``: Whisper tiny.en transcript of the clip, embedded as text."""

    modality = "audio"
    backends: dict = {}  # no model of its own to choose a backend for (the text encoder: auto)

    def __init__(self, text: str = "minilm", cache_dir: str | Path | None = None,
                 beam: int = 1):
        from polymodal.features.encoders.registry import build_encoder

        if not text:
            raise UsageError("encoder 'asr' names a text encoder: asr:<text encoder>, e.g. "
                             "asr:minilm")
        self.text = build_encoder(text, modality="text", cache_dir=cache_dir)
        self.decoder = WhisperDecoder(beam=beam)
        self.name = f"asr:{text}"
        self.dim = int(self.text.dim)
        self.batch_size = 8
        self.max_seconds = limits.MAX_AUDIO_SECONDS
        self.last_transcripts: list[str] = []

    @property
    def id(self) -> str:
        return f"asr[{self.decoder.model_id}|windows=30s-joined|numbers=words]>{self.text.id}"

    def prepare(self, item: Any) -> np.ndarray:
        """16 kHz mono samples of an audio file (a video's audio track), at most
        ``MAX_AUDIO_SECONDS`` (raises `DecodeError`)."""
        from polymodal.data.video import VIDEO_SUFFIXES

        if Path(str(item)).suffix.lower() in VIDEO_SUFFIXES:
            from polymodal.data.video import read_audio_track

            return read_audio_track(item, SAMPLE_RATE, self.max_seconds)
        return self.decoder.encoder.prepare(item)

    def transcribe(self, waves: Sequence[np.ndarray]) -> list[str]:
        """One transcript per waveform (30-s windows transcribed in one batch, joined)."""
        win = int(WINDOW_SECONDS * SAMPLE_RATE)
        pieces = [(j, w[a:a + win]) for j, w in enumerate(waves)
                  for a in range(0, max(len(w), 1), win)]
        texts = self.decoder.transcribe_waves([p for _, p in pieces])
        out: list[list[str]] = [[] for _ in waves]
        for (j, _), t in zip(pieces, texts):
            if t:
                out[j].append(t)
        return [spell_numbers(" ".join(t)) for t in out]

    def encode_prepared(self, batch: Sequence[np.ndarray]) -> torch.Tensor:
        if not len(batch):
            return torch.empty(0, self.dim)
        self.last_transcripts = self.transcribe(batch)
        # an empty transcript (silence) is embedded as a blank text: one fixed, uninformative
        # vector rather than a failure
        return self.text.encode([t or " " for t in self.last_transcripts]).float()

    def encode(self, items: Any, batch_size: int | None = None, normalize: bool = False,
               numpy: bool = False) -> Any:
        return encode_items(self, items, batch_size, normalize, numpy)


__all__ = ["ASREncoder", "WhisperDecoder"]
