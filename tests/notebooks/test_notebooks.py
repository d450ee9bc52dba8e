"""The notebooks in ``notebooks/`` run top to bottom against a copy of the trained demo workdir.

Each notebook is executed in memory by nbclient in a fresh kernel of this venv's interpreter (a
kernelspec written to a temporary folder names ``sys.executable``, so a ``python3`` kernel installed
elsewhere on the machine is never picked up); ``$CHURNWARN_CONFIG`` points the notebook's
``load_settings()`` at the copy. The files in git carry no outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

from core.config import CONFIG_ENV  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
KERNEL = "churnwarn-venv"
CELL_TIMEOUT = 120  # seconds per cell


def run_notebook(path: Path, config: Path, tmp_path: Path):
    """Execute ``path`` in a kernel of this interpreter with ``$CHURNWARN_CONFIG=config``; the executed notebook."""
    spec_dir = tmp_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "churnwarn venv",
        "language": "python",
        "env": {CONFIG_ENV: str(config), "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]))
    nb = nbformat.read(path, as_version=4)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(run_dir)}}).execute()
    return nb


def outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def text_of(nb) -> str:
    parts = []
    for o in outputs(nb):
        if o["output_type"] == "stream":
            parts.append(o["text"])
        elif o["output_type"] in ("execute_result", "display_data"):
            parts.append(o["data"].get("text/plain", "") + o["data"].get("text/html", ""))
    return "\n".join(parts)


@pytest.mark.parametrize(
    "name", ["01_explore_signals.ipynb", "02_train_and_read_reasons.ipynb", "03_retention_loop.ipynb"]
)
def test_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), f"{name}: strip its outputs"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_explore_signals_runs(copy_trained, tmp_path):
    settings = copy_trained()
    nb = run_notebook(NOTEBOOKS / "01_explore_signals.ipynb", settings.config_path, tmp_path)
    outs = outputs(nb)
    assert not [o for o in outs if o["output_type"] == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outs) >= 5  # at least one figure per signal group
    text = text_of(nb)
    assert str(settings.workdir) in text  # it read the copy, not the repository's workdir
    for flag in ("competitor_hotline_calls_30d &gt;= 1", "zero_call_days_7d &gt;= 5", "in_renewal_window == 1",
                 "days_since_recharge &gt; 30 (prepaid)"):
        assert flag in text or flag.replace("&gt;", ">") in text


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_and_read_reasons_runs(copy_trained, tmp_path):
    settings = copy_trained()
    nb = run_notebook(NOTEBOOKS / "02_train_and_read_reasons.ipynb", settings.config_path, tmp_path)
    outs = outputs(nb)
    assert not [o for o in outs if o["output_type"] == "error"]
    assert any("image/png" in o.get("data", {}) for o in outs)  # the SHAP bar chart
    text = text_of(nb)
    assert str(settings.workdir) in text
    assert "champion: churnwarn v" in text
    for model in ("rules", "logistic", "lightgbm"):
        assert model in text
    zh = [line for line in text.splitlines() if line.strip().startswith("[zh]")]
    assert any("天" in line or "%" in line for line in zh), zh
    en = [line for line in text.splitlines() if line.strip().startswith("[en]")]
    assert len(en) >= 5 * 4 and any("->" in line for line in en)  # 3 reasons + an action per subscriber


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_retention_loop_runs(copy_trained, tmp_path):
    settings = copy_trained()
    nb = run_notebook(NOTEBOOKS / "03_retention_loop.ipynb", settings.config_path, tmp_path)
    outs = outputs(nb)
    assert not [o for o in outs if o["output_type"] == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outs) >= 2  # uplift by group, money by action
    text = text_of(nb)
    assert str(settings.workdir) in text
    assert "work-order outcomes of the list of" in text and "retention treated" in text
    assert (settings.evaluations_dir / str(settings.features.snapshots[-1]) / "report.html").exists()
