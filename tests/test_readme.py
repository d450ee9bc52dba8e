"""The README's main command, run as a newcomer would: in a fresh clone, from nothing but the README.

Slow (it installs the locked environment into the clone and runs the whole pipeline), so marked
``slow``; CI runs it like every other test.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_command(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {marker} -->\s*```(?:bash|sh)?\n(.+?)\n```", text, re.S)
    assert m, f"README has no command marked {marker}"
    return m.group(1).strip()


def newcomer_env() -> dict[str, str]:
    """The environment of a plain shell: no active venv, no uv run state."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UV_", "VIRTUAL_ENV", "CHURNWARN_", "PYTEST"))
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    return env


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert readme_command("test-command") in ci


@pytest.mark.slow
def test_main_command_from_a_fresh_clone(tmp_path):
    clone = tmp_path / "churnwarn"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    cmd = readme_command("main-command")
    res = subprocess.run(
        ["bash", "-c", cmd],
        cwd=clone,
        env=newcomer_env(),
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    assert "churn warnings by expected loss - model churnwarn v1 (@champion" in out
    assert "unknown subscriber 'S9999999'" in out
    assert "P(churn 30d)" in out
    for stage in ("generate", "validate", "features", "train", "warn"):
        assert f"Running stage '{stage}'" in out
    assert (clone / "dvc.lock").exists() and (clone / "data" / "feast" / "online_store.db").exists()
