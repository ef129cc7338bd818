"""Error types. Every error a user can cause is a `PolymodalError` with a one-line message.

The CLI prints `error: <message>` and exits with code 2 for these; anything else is a bug.
"""
from __future__ import annotations

from dataclasses import dataclass


class PolymodalError(Exception):
    """Base class for errors caused by user input (bad files, bad arguments)."""


class UsageError(PolymodalError):
    """A bad argument or option value."""


@dataclass
class Problem:
    """One problem found in one cell of a manifest: where it is and why."""

    file: str
    row: int | None  # 1-based data row (header excluded); None for file-level problems
    column: str | None
    reason: str
    level: str = "error"  # "error" (row unusable) or "warning" (row used, cell treated as missing)

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column:
            where += f", column '{self.column}'"
        return f"{where}: {self.reason}"

    def to_dict(self) -> dict:
        return {"file": self.file, "row": self.row, "column": self.column, "reason": self.reason,
                "level": self.level}


class DataError(PolymodalError):
    """Bad input data, located by file, row and column where known."""

    def __init__(self, reason: str, file: str | None = None, row: int | None = None,
                 column: str | None = None):
        self.problem = Problem(str(file) if file else "<input>", row, column, reason)
        super().__init__(str(self.problem))

    @property
    def reason(self) -> str:
        return self.problem.reason


class DecodeError(PolymodalError):
    """A media file (image / audio) that cannot be used. Raised by loaders with the file path;
    callers that know the manifest row re-raise it as a `DataError`."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")
