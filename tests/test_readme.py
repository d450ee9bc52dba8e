"""The README is a short manual whose commands work: its main command, run as a newcomer would (in a
fresh clone, from nothing but the README), its test command is CI's, and it stays a manual (short,
no dates in prose, links that resolve).

The main command is slow (it installs the locked environment into the clone and runs the whole
pipeline), so marked ``slow``; CI runs it like every other test.
"""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_command(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {marker} -->\s*```(?:bash|sh)?\n(.+?)\n```", text, re.S)
    assert m, f"README has no command marked {marker}"
    return m.group(1).strip()


def prose(path: Path) -> str:
    """A markdown file without its fenced code blocks (commands and printed output)."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)


def readme_prose() -> str:
    return prose(ROOT / "README.md")


def local_links(text: str) -> list[str]:
    """Relative link targets of markdown text, without their #anchors."""
    return [link for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if "://" not in link]


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


def test_readme_is_a_manual_of_at_most_200_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README has {len(lines)} lines: move explanation into docs/"


def test_readme_prose_has_no_dates():
    dates = re.findall(r"\b\d{4}-\d{2}-\d{2}\b", readme_prose())
    assert not dates, f"dates in README prose (results belong in docs/benchmarks/): {dates}"


def test_readme_and_docs_links_resolve():
    local = local_links(readme_prose())
    assert any(link.startswith("docs/benchmarks/") for link in local), "README links no benchmark result"
    missing = [link for link in local if not (ROOT / link).exists()]
    for doc in sorted((ROOT / "docs").glob("*.md")):
        missing += [
            f"{doc.name}: {link}" for link in local_links(prose(doc)) if not (doc.parent / link).exists()
        ]
    assert not missing, f"links to missing files: {missing}"


@pytest.mark.slow
def test_main_command_from_a_fresh_clone(tmp_path):
    clone = tmp_path / "churnwarn"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    cmd = readme_command("main-command")
    res = subprocess.run(
        ["bash", "-c", cmd],
        cwd=clone,
        # no Java for Spark: the embedded default must never start a Spark JVM
        env={**newcomer_env(), "JAVA_HOME": "/nonexistent/no-spark-here"},
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
    assert not _cached_phone_numbers(clone / ".dvc" / "cache")
    assert stat.S_IMODE((clone / "data" / "landing").stat().st_mode) == 0o700  # the export: owner only


def _cached_phone_numbers(cache: Path) -> list[str]:
    """Files in DVC's cache that are tables with a phone-number column (its copies are world-readable)."""
    found = []
    for f in (p for p in cache.rglob("*") if p.is_file()):
        try:
            names = pq.read_schema(f).names
        except Exception:  # not a parquet file
            continue
        if {"msisdn", "other_party"} & set(names):
            found.append(str(f))
    return found
