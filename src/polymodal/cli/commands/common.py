"""What the commands share: ``KEY=VALUE`` options, the row report of a batch job, the automatic
HTML report and the analysis plots. Nothing here imports torch (the parser imports the command
modules)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence


def pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    """Parse repeated ``key=value`` options (none given: empty)."""
    from polymodal.cli.options import parse_pairs

    return parse_pairs(values or [], flag)


def print_row_report(warnings, skipped, details: Path) -> None:
    """What a batch job did with bad cells (warnings) and bad rows (skipped, listed in
    ``details``), the first few of each."""
    if warnings:
        print(f"warnings: {len(warnings)} cells treated as missing")
        print_problems(warnings, 5)
    if skipped:
        print(f"skipped: {len(skipped)} (details in {details})")
        print_problems(skipped, 10)


def print_problems(problems, limit: int = 20) -> None:
    for p in problems[:limit]:
        print(f"  row {p.row if p.row is not None else '-'}  {p.column or '-'}: {p.reason}")
    if len(problems) > limit:
        print(f"  … and {len(problems) - limit} more")


def auto_report(a: argparse.Namespace, folder: str | Path | None = None,
                label: str = "report") -> None:
    """Write FOLDER/report.html (default: ``a.out``) after a task unless --no-report; never
    fails the command. Tasks never import reports: the CLI asks for them."""
    if getattr(a, "no_report", False):
        return
    from polymodal.report import auto_report

    report = auto_report(folder or a.out)
    if report:
        print(f"{label}: {report}")


def plot(draw: Callable[[], Path]) -> None:
    """Draw an analysis picture (report layer); without matplotlib say so and go on."""
    try:
        draw()
    except ImportError as e:
        print(f"note: no plot ({e.name or e} is not installed: pip install 'polymodal[report]')",
              file=sys.stderr)
