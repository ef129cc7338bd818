"""The bundled text model's fast tokenizer through the ``tokenizers`` library alone (no torch,
no transformers): `MiniLMEncoder`, its ONNX / OpenVINO runners and exported runs
(`polymodal.tasks.retrieval.exported`) tokenize with it. ``transformers.AutoTokenizer`` reads
the same ``tokenizer.json``; a test checks that the ids are equal."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from polymodal.core.runfolder import one_line


def load_tokenizer(path: str | Path, max_length: int | None) -> Any:
    """The fast tokenizer at ``path`` (a ``tokenizer.json``) set up as `MiniLMEncoder`
    tokenizes: special tokens, truncation at ``max_length`` (longest first; None: none, to
    count a text's tokens), no padding (batches are padded by the caller, with a mask).
    ``pad_id(tok)`` gives its padding id."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception
        raise OSError(f"{path}: {one_line(e) or type(e).__name__}") from None
    tok.no_padding()
    if max_length is None:
        tok.no_truncation()
    else:
        tok.enable_truncation(max_length)
    return tok


def pad_id(tok: Any) -> int:
    """The id of ``[PAD]`` (0 when the vocabulary has none)."""
    found = tok.token_to_id("[PAD]")
    return int(found) if found is not None else 0


def token_ids(tok: Any, texts: Sequence[str]) -> list[list[int]]:
    """Each text's ids, special tokens included, truncated at the tokenizer's max length."""
    return [e.ids for e in tok.encode_batch(list(texts))]


__all__ = ["load_tokenizer", "pad_id", "token_ids"]
