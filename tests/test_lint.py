"""The code stays ruff-clean (lint and format), so the test command fails on a lint error."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert exe, "ruff is not installed: it is in the dev group (uv sync)"
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_finds_no_lint_error():
    res = _ruff("check", "--no-cache", ".")
    assert res.returncode == 0, res.stdout + res.stderr


def test_code_is_ruff_formatted():
    res = _ruff("format", "--check", "--no-cache", ".")
    assert res.returncode == 0, "run `uv run ruff format .`:\n" + res.stdout + res.stderr
