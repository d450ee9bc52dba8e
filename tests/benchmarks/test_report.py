"""Every benchmark writes its result file through one helper: one header, then its tables."""

import datetime as dt
import os
import re
import sys

from core.config import REPO_ROOT as ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import _report  # noqa: E402

SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))


def test_the_file_has_one_header_with_command_date_and_machine_then_the_table(tmp_path):
    table = _report.md_table(["measure", "value"], [("wall time", "1.0 s")], "lr")
    path = _report.write_report(
        ROOT / "benchmarks" / "generate_scale.py",
        "Simulator at scale",
        [table, "a note"],
        argv=["--subscribers", "2000"],
        out_dir=tmp_path,
    )
    assert path == tmp_path / "generate_scale.md"
    text = path.read_text()
    assert text.startswith("# Simulator at scale\n")
    assert "- command: `uv run python benchmarks/generate_scale.py --subscribers 2000`" in text
    assert re.search(r"- date: \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", text)
    assert f"- machine: {os.cpu_count()} CPUs, " in text and "GiB memory, Python 3." in text
    assert text.count("- machine:") == 1 and text.count("- date:") == 1
    assert "| measure | value |\n|---|---:|\n| wall time | 1.0 s |" in text
    assert text.index("- machine:") < text.index("| measure") < text.index("a note")


def test_render_is_deterministic_given_the_time():
    now = dt.datetime(2030, 1, 2, 3, 4, tzinfo=dt.UTC)
    a = _report.render("benchmarks/x.py", "T", ["b"], argv=[], now=now)
    assert "- date: 2030-01-02 03:04 UTC" in a and a == _report.render("benchmarks/x.py", "T", ["b"], [], now)


def test_every_script_writes_its_result_file_through_the_helper_and_it_is_committed():
    for script in SCRIPTS:
        assert re.search(r"write_report\(\s*__file__", script.read_text()), (
            f"{script.name} does not use _report"
        )
        result = ROOT / "docs" / "benchmarks" / f"{script.stem}.md"
        assert result.exists(), f"{result.relative_to(ROOT)} missing: run {script.name}"
        text = result.read_text()
        assert f"- command: `uv run python benchmarks/{script.name}" in text
        assert "- machine:" in text and "- date:" in text
