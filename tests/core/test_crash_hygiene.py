"""What a killed run leaves must not block or leak: the stage lock dies with its holder, a second run is
refused while the first lives, half-written output folders of dead runs are removed, secrets are never
readable by others."""

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
from typer.testing import CliRunner

from core.io import WorkdirBusy, remove_dead_leftovers, workdir_lock, write_json_atomic, write_secret
from pipelines.cli import app


def _hold_lock(workdir, name: str) -> subprocess.Popen:
    """A process that takes the stage lock and keeps it until killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from core.io import workdir_lock
        with workdir_lock({str(workdir)!r}, {name!r}):
            print("held", flush=True)
            time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path):
    proc = _hold_lock(tmp_path, "features")
    try:
        with pytest.raises(WorkdirBusy, match=rf"`churn features` is already running .*pid {proc.pid}"):
            with workdir_lock(tmp_path, "features"):
                pass
        with workdir_lock(tmp_path, "train"):  # another stage is not held up
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with workdir_lock(tmp_path, "features"):  # the kernel dropped the dead holder's lock
        pass


def test_the_cli_refuses_a_second_run_of_a_stage_with_exit_2(trained_copy):
    proc = _hold_lock(trained_copy.workdir, "features")
    try:
        result = CliRunner().invoke(app, ["features", "--config", str(trained_copy.config_path)])
    finally:
        proc.kill()
        proc.wait()
    assert result.exit_code == 2, result.output
    assert "`churn features` is already running" in result.output and f"pid {proc.pid}" in result.output


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    time.sleep(0.1)
    mine = tmp_path / f".2026-06-01.{os.getpid()}.abc123.partial"
    gone = tmp_path / f".2026-06-01.{dead_pid}.def456.partial"
    old_style = tmp_path / ".2026-06-01.ghi789.partial"
    final = tmp_path / "2026-06-01"
    for d in (mine, gone, old_style, final):
        d.mkdir()
    my_file = tmp_path / f".features.parquet.{os.getpid()}.k2j3.tmp"
    dead_file = tmp_path / f".features.parquet.{dead_pid}.x9y8.tmp"
    state = tmp_path / ".partitions.json"
    for f in (my_file, dead_file, state):
        f.write_text("x")

    removed = remove_dead_leftovers(tmp_path)

    assert sorted(removed) == sorted([gone, old_style, dead_file])
    assert mine.exists() and final.exists() and my_file.exists() and state.exists()


def test_an_atomic_write_removes_what_a_killed_writer_left(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    left = tmp_path / f".report.json.{int(dead.stdout)}.abcd.tmp"
    left.write_text('{"half": ')
    write_json_atomic({"whole": True}, tmp_path / "report.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_secret_is_owner_only_from_the_start(tmp_path):
    path = tmp_path / ".secrets" / "salt"
    write_secret(path, "s3cret")
    assert path.read_text() == "s3cret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["salt"]  # no temporary file left
