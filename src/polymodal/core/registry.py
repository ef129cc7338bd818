"""Named building blocks, looked up by name and imported lazily.

A `Registry` is a module constant built once from a list of `Entry`s; it has no ``register()``:
every name a user can type is written next to its siblings in one table, and importing the
table imports none of the targets (so the CLI and the configs can check names without torch)::

    FUSIONS = Registry("fusion", [Entry("early", "polymodal.nn.fusion.early:EarlyFusion",
                                        "concatenate, then an MLP"), ...],
                       fixed=("dims", "out_dim"))
    FUSIONS.build("early", dims, 64, hidden=128)   # options checked against the signature

``fixed`` names the target parameters that the calling code supplies (inputs, shapes); every
other named parameter of the target's signature is a user option (``options(name)``).
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping, Sequence

from polymodal.core.errors import UsageError

__all__ = ["Entry", "Registry", "closest"]


def closest(word: str, choices: Iterable[str], n: int = 1) -> list[str]:
    """Up to ``n`` of ``choices`` that look like ``word`` (difflib), best first."""
    return difflib.get_close_matches(str(word), list(choices), n=n, cutoff=0.6)


def _quoted(names: Sequence[str]) -> str:
    return " or ".join(f"'{n}'" for n in names)


@dataclass(frozen=True)
class Entry:
    """One named building block: ``target`` is ``"package.module:attribute"``, imported only
    when used; ``metadata`` is free-form listing / checking information (``modality``,
    ``dim``…); ``preset`` holds keyword arguments the entry fixes (``triplet-semihard`` is
    ``triplet_loss`` with ``mining="semihard"``)."""

    name: str
    target: str
    description: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    preset: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        module, sep, attr = self.target.partition(":")
        if not (module and sep and attr):
            raise ValueError(f"entry '{self.name}': target must be 'module:attribute', "
                             f"got {self.target!r}")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        object.__setattr__(self, "preset", MappingProxyType(dict(self.preset)))


class Registry:
    """A read-only table of `Entry`s of one ``kind`` ("encoder", "fusion", …)."""

    __slots__ = ("_kind", "_entries", "_fixed")

    def __init__(self, kind: str, entries: Iterable[Entry], fixed: Sequence[str] = ()):
        table: dict[str, Entry] = {}
        for e in entries:
            if e.name in table:
                raise ValueError(f"{kind} registry: duplicate name '{e.name}'")
            table[e.name] = e
        self._kind = kind
        self._entries: Mapping[str, Entry] = MappingProxyType(table)
        self._fixed = tuple(fixed)

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def fixed(self) -> tuple[str, ...]:
        """Target parameters the caller supplies (not user options)."""
        return self._fixed

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> Entry:
        """``get(name)``: an unknown name is a `UsageError`, not a `KeyError`."""
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self._kind!r}, {self.names()})"

    def error(self, name: str, extra: Sequence[str] = ()) -> UsageError:
        """The one-line error for an unknown ``name`` (``extra``: more valid spellings that
        are not entries, e.g. ``unimodal:image``). An entry with a ``scheme`` in its metadata
        is shown by it (``hf:<model>``)."""
        shown = {e.name: e.metadata.get("scheme", e.name) for e in self._entries.values()}
        shown.update({x: x for x in extra})
        valid = list(shown.values())
        near = [shown[n] for n in closest(name, shown)]
        hint = f"; did you mean {_quoted(near)}? (valid: " if near else "; valid: "
        return UsageError(f"unknown {self._kind} '{name}'{hint}{', '.join(valid)}"
                          f"{')' if near else ''}")

    def get(self, name: str) -> Entry:
        """The entry called ``name``; a `UsageError` with a did-you-mean otherwise."""
        if name not in self:
            raise self.error(name)
        return self._entries[name]

    def load(self, name: str) -> Any:
        """Import and return the target of ``name`` (class or function)."""
        target = self.get(name).target
        module, _, attr = target.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise ImportError(f"{self._kind} '{name}': {target} does not exist") from None
        return obj

    def options(self, name: str) -> list[str]:
        """The user options of ``name``: named parameters of the target's signature, minus
        the registry's ``fixed`` ones and the entry's ``preset`` ones."""
        skip = set(self._fixed) | set(self.get(name).preset)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in inspect.signature(self.load(name)).parameters.values()
                if p.kind in kinds and p.name not in skip]

    def check_options(self, name: str, options: Iterable[str]) -> None:
        """A `UsageError` naming the unknown user options (``fixed`` ones count as unknown
        here) with a did-you-mean and the valid ones."""
        valid = self.options(name)
        bad = [k for k in options if k not in valid]
        if bad:
            near = closest(bad[0], valid)
            hint = f"; did you mean {_quoted(near)}?" if near else ""
            raise UsageError(f"unknown option{'s' if len(bad) > 1 else ''} "
                             f"{', '.join(repr(b) for b in bad)} for {self._kind} '{name}'"
                             f"{hint} (valid options: {', '.join(valid) or 'none'})")

    def build(self, name: str, *args: Any, **options: Any) -> Any:
        """``target(*args, **preset, **options)`` after checking ``options`` (``fixed``
        parameters may be passed by keyword too)."""
        self.check_options(name, [k for k in options if k not in self._fixed])
        return self.load(name)(*args, **{**self.get(name).preset, **options})

    def rows(self) -> list[tuple[str, str, dict[str, Any]]]:
        """``(name, description, metadata)`` of every entry, for listings (imports nothing)."""
        return [(e.name, e.description, dict(e.metadata)) for e in self._entries.values()]
