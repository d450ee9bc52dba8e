"""Under ``spark-submit`` the launcher's master and settings win over the config's; the settings the
queries need are applied either way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyspark
import pytest

from core.config import project_root

pytestmark = pytest.mark.slow  # a second JVM

SCRIPT = """
from core.config import SparkConfig
from features.spark_engine import spark_session
s = spark_session(SparkConfig(master="local[2]", conf={"spark.executor.memory": "3g", "spark.sql.shuffle.partitions": "7"}))
print("RESULT", s.sparkContext.master, s.conf.get("spark.executor.memory"), s.conf.get("spark.sql.shuffle.partitions"),
      s.conf.get("spark.sql.session.timeZone"))
s.stop()
"""


def test_spark_submit_settings_win_over_the_config(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(project_root())}
    out = subprocess.run(
        [str(submit), "--master", "local[1]", "--conf", "spark.executor.memory=1g", str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=tmp_path,
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, out.stderr[-2000:]
    # submitted: master and executor memory; from the config: shuffle partitions; required: UTC
    assert line.split()[1:] == ["local[1]", "1g", "7", "UTC"]
