"""Time the README's main job as a newcomer meets it: fresh clone, install, run end to end.

    uv run python benchmarks/e2e_demo.py [--cold-cache]

Writes docs/benchmarks/e2e_demo.md (see benchmarks/_report.py) and prints it. ``--cold-cache`` installs with an empty uv cache (every wheel downloaded), the
closest to a fresh machine; without it the machine's uv cache is used.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from _report import md_table, write_report  # noqa: E402
from test_readme import newcomer_env  # noqa: E402  (one definition of "a plain shell")


def timed(label: str, cmd: str, cwd: Path, env: dict, rows: list) -> None:
    t0 = time.perf_counter()
    res = subprocess.run(
        ["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    rows.append((label, cmd, time.perf_counter() - t0, res.returncode))
    if res.returncode:
        print(res.stdout[-3000:], res.stderr[-3000:], file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cold-cache", action="store_true", help="install with an empty uv cache")
    args = ap.parse_args()
    rows: list = []
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "churnwarn"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        env = newcomer_env()
        if args.cold_cache:
            env["UV_CACHE_DIR"] = str(Path(tmp) / "uv-cache")
        timed(
            "install (uv sync --locked)",
            "python3 -m pip install -q uv && uv sync --locked -q",
            clone,
            env,
            rows,
        )
        timed("main job, first run (all stages + serve)", "uv run --locked churn demo", clone, env, rows)
        timed("main job, rerun (dvc skips unchanged stages)", "uv run --locked churn demo", clone, env, rows)
    total = rows[0][2] + rows[1][2]
    table = [(label, f"{secs:.1f}", rc) for label, _, secs, rc in rows]
    table.append(("fresh machine total (install + first run)", f"{total:.1f}", ""))
    cache = "cold uv cache: every wheel downloaded" if args.cold_cache else "warm uv cache"
    write_report(
        __file__,
        "The main job from a fresh clone",
        [
            f"A fresh clone, installed with a {cache}, then the README's main job twice.",
            md_table(["step", "seconds", "exit"], table, "lrr"),
            "Targets: under 600 s on a fresh machine including installation, under 180 s for the "
            "first run once installed.",
        ],
    )


if __name__ == "__main__":
    main()
