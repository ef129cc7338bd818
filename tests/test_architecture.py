"""The layer contract (.importlinter): imports point down only, no import cycle between layers;
task configs load without torch."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_linter_contract_is_kept():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("import-linter is not installed (it is a dev dependency: pip install -e '.[dev]')")
    res = subprocess.run([exe, "--config", str(REPO / ".importlinter")], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "1 kept, 0 broken" in res.stdout


def test_task_configs_and_cli_parser_import_without_torch():
    code = ("import sys\n"
            "import polymodal.tasks.retrieval.config, polymodal.tasks.classify.config\n"
            "import polymodal.tasks.caption.config, polymodal.tasks.generate.config\n"
            "import polymodal.train.config, polymodal.core.config\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
