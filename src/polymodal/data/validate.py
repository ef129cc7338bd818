"""Manifest validation: check every row and every media file, report problems as a table.

`validate_manifest` runs everything `read_manifest` checks (ids present and unique, known split
values, NaN cells, paths that are not paths, rows with no modality) and then, per row: the media
files pass `media_note` (regular file, size, header limits: the check ``encode`` runs too, so
both refuse the same files with the same reason and state the same notes, e.g. audio cut at
``max_seconds``) and decode with the real loaders (in a thread pool, each distinct file once),
texts are not empty. File-level errors (missing or empty manifest, non-UTF-8 CSV, a mapped column that is not
there, an unreadable Parquet file) do NOT raise: they become a report with one file-level problem
(row None), so ``polymodal validate`` always prints a table and exits 1 on any error-level problem.
Only bad arguments (e.g. a sample rate outside the limits) raise `UsageError`.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from polymodal.data.limits import MAX_AUDIO_SECONDS
from polymodal.data.loaders import (check_file, check_sample_rate, load_audio, load_image,
                                    media_note)
from polymodal.data.manifest import MEDIA, Manifest, read_manifest
from polymodal.core.errors import DataError, DecodeError, Problem


@dataclass
class ValidationReport:
    """Problems found in one manifest, plus counts."""

    path: Path
    problems: list[Problem]
    n_rows: int = 0  # data rows in the file
    n_usable: int = 0  # rows with no error-level problem
    counts: dict[str, int] = field(default_factory=dict)  # modality -> rows with a usable item
    columns: dict[str, str] = field(default_factory=dict)  # role -> column name

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level != "error"]

    @property
    def ok(self) -> bool:
        """True when there is no error-level problem (warnings allowed)."""
        return not self.errors

    @property
    def exit_code(self) -> int:
        """What the CLI should exit with: 0 when ok, 1 otherwise."""
        return 0 if self.ok else 1

    def table(self, limit: int | None = None) -> str:
        """The report as an aligned text table; see `render_report`."""
        return render_report(self, limit)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "n_rows": self.n_rows, "n_usable": self.n_usable,
                "n_errors": len(self.errors), "n_warnings": len(self.warnings),
                "counts": dict(self.counts), "columns": dict(self.columns),
                "problems": [p.to_dict() for p in self.problems]}


def media_label(path: Path, root: Path) -> str:
    """How reports name a media file: relative to the manifest's folder when inside it (the
    same in ``validate`` and ``encode`` reports)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _check_media(manifest: Manifest, sample_rate: int, max_seconds: float | None,
                 workers: int, progress: bool) -> dict[tuple[str, Path], tuple[str, str] | None]:
    """Decode every distinct (modality, file) once; -> (level, reason) or None when fine."""
    jobs: list[tuple[str, Path]] = []
    seen: set[tuple[str, Path]] = set()
    for rec in manifest.records:
        for m in MEDIA:
            p = rec.get(m)
            if p is not None and (m, p) not in seen:
                seen.add((m, p))
                jobs.append((m, p))

    def check(job: tuple[str, Path]) -> tuple[str, str] | None:
        m, p = job
        try:  # the header check encode runs too, then a full decode as the encoders do it
            note = media_note(m, p, max_seconds)
            if m == "image":
                load_image(p)
            elif m == "video":  # decodes every frame up to the limit: truncated data shows
                from polymodal.data.video import sample_frames

                sample_frames(p)
            else:
                load_audio(p, sample_rate=sample_rate, max_seconds=max_seconds)
            return None if note is None else ("warning", note)
        except DecodeError as e:
            return ("error", e.reason)
        except Exception as e:  # a loader bug must not hide the other rows
            return ("error", f"cannot decode {m} ({type(e).__name__}: {e})")

    results: dict[tuple[str, Path], tuple[str, str] | None] = {}
    if not jobs:
        return results
    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = pool.map(check, jobs, chunksize=16)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(jobs), desc="checking media", unit="file")
        for job, res in zip(jobs, it):
            results[job] = res
    return results


def validate_manifest(path: str | Path, columns: dict[str, str] | None = None,
                      sample_rate: int = 16000, check_media: bool = True,
                      progress: bool = False, max_seconds: float | None = MAX_AUDIO_SECONDS,
                      workers: int | None = None) -> ValidationReport:
    """Check every row of a manifest (and decode its media unless ``check_media`` is False).
    File-level errors become a one-problem report instead of raising."""
    check_sample_rate(sample_rate)
    try:
        manifest = read_manifest(path, columns=columns)
    except DataError as e:  # the file named as read_manifest resolved it (no second expanduser)
        return ValidationReport(Path(e.problem.file), [e.problem])
    fname, root = str(manifest.path), manifest.root
    problems = list(manifest.problems)
    where = {(p.row, p.column) for p in problems}
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    media = (_check_media(manifest, int(sample_rate), max_seconds, workers, progress)
             if check_media else {})
    bad_rows: set[int] = {p.row for p in problems if p.level == "error" and p.row is not None}
    counts = {m: 0 for m in manifest.modalities}
    for rec in manifest.records:
        for m in MEDIA:
            p = rec.get(m)
            if p is None:
                continue
            col = manifest.column_of(m)
            if check_media:
                res = media.get((m, p))
            else:
                try:
                    check_file(p)
                    res = None
                except DecodeError as e:
                    res = ("error", e.reason)
            if res is not None:
                problems.append(Problem(fname, rec.row, col, f"{media_label(p, root)}: {res[1]}",
                                        res[0]))
                if res[0] == "error":
                    bad_rows.add(rec.row)
                    continue
            counts[m] += 1
        if "text" in manifest.columns:
            col = manifest.column_of("text")
            if rec.text is None:
                if (rec.row, col) not in where:
                    problems.append(Problem(fname, rec.row, col, "empty text; treated as missing",
                                            "warning"))
            else:
                counts["text"] += 1
                if any("\ufffd" in t for t in rec.text):
                    problems.append(Problem(fname, rec.row, col, "text contains U+FFFD "
                                            "replacement characters (mis-decoded upstream?)",
                                            "warning"))
    problems.sort(key=lambda p: (p.row if p.row is not None else 0, p.column or ""))
    n_usable = sum(1 for r in manifest.records if r.row not in bad_rows)
    return ValidationReport(manifest.path, problems, manifest.n_rows, n_usable, counts,
                            dict(manifest.columns))


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for k, r in enumerate(rows):
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1])] + [r[-1]]
        out.append(" | ".join(cells).rstrip())
        if k == 0:
            out.append("-+-".join("-" * w for w in widths))
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def render_report(report: ValidationReport, limit: int | None = None) -> str:
    """The report as an aligned text table (row | column | level | reason) and a summary line.
    ``limit`` caps the number of problem lines shown."""
    shown = report.problems if limit is None else report.problems[:limit]
    lines = [f"{report.path}"]
    if shown:
        rows = [("row", "column", "level", "reason")]
        rows += [("-" if p.row is None else str(p.row), p.column or "-", p.level, p.reason)
                 for p in shown]
        lines += _table(rows)
        if len(shown) < len(report.problems):
            lines.append(f"... and {len(report.problems) - len(shown)} more problems")
    counts = ", ".join(f"{m} {n}" for m, n in report.counts.items())
    lines.append(f"{report.n_rows} rows, {report.n_usable} usable"
                 + (f" ({counts})" if counts else "")
                 + f"; {_plural(len(report.errors), 'error')}, "
                   f"{_plural(len(report.warnings), 'warning')}")
    return "\n".join(lines)
