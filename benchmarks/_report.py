"""The result file every benchmark script writes: ``docs/benchmarks/<script>.md``.

One header (the command that produced it, the date, the machine), then the script's tables and
notes. Each run replaces the file, so the committed file is always one run of the committed script.

    from _report import md_table, write_report

    write_report(__file__, "Title", [md_table(["measure", "value"], rows), "a note"])
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "benchmarks"


def memory_gib() -> float:
    """Physical memory of the machine, in GiB (0 when the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


def machine() -> str:
    """CPU count, memory, Python version and platform, on one line; the load average when the
    result is written, so a busy machine shows."""
    try:
        load = ", load average {:.1f} / {:.1f} / {:.1f} (1 / 5 / 15 min)".format(*os.getloadavg())
    except OSError:
        load = ""
    return (
        f"{os.cpu_count()} CPUs, {memory_gib():.1f} GiB memory, Python {platform.python_version()} "
        f"({platform.system()} {platform.machine()}){load}"
    )


def command(script: str | Path, argv: Sequence[str] | None = None) -> str:
    """The command line that ran ``script``, as a user would type it from the repository root."""
    args = sys.argv[1:] if argv is None else list(argv)
    path = Path(script).resolve()
    try:
        path = path.relative_to(REPO)
    except ValueError:
        pass
    return " ".join(["uv run python", shlex.quote(path.as_posix()), *map(shlex.quote, args)])


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None) -> str:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default: all left)."""
    align = align or "l" * len(headers)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(
    script: str | Path,
    title: str,
    blocks: Sequence[str],
    argv: Sequence[str] | None = None,
    now: dt.datetime | None = None,
) -> str:
    """The file's text: title, the header (command, date, machine), then the blocks."""
    now = now or dt.datetime.now(dt.UTC)
    header = [
        f"# {title}",
        "",
        f"- command: `{command(script, argv)}`",
        f"- date: {now:%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        "",
        f"<!-- written by {Path(script).name}; rerun the command above to replace it -->",
    ]
    return "\n".join(header) + "\n\n" + "\n\n".join(b.strip("\n") for b in blocks) + "\n"


def write_report(
    script: str | Path,
    title: str,
    blocks: Sequence[str],
    argv: Sequence[str] | None = None,
    out_dir: Path | None = None,
) -> Path:
    """Write ``<out_dir>/<script name>.md`` (default ``docs/benchmarks/``), print it, return its path.

    ``$CHURNWARN_BENCH_RESULTS`` overrides the default folder (the tests write to a temporary one).
    """
    out_dir = out_dir or Path(os.environ.get("CHURNWARN_BENCH_RESULTS", RESULTS))
    text = render(script, title, blocks, argv)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{Path(script).stem}.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    print("\n" + text)
    print(f"written to {path}")
    return path
