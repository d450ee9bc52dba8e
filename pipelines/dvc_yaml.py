"""``dvc.yaml`` generated from the stage declaration (``churn dvc-yaml``; a test keeps it current).

Each stage's code dependencies follow from what its module imports, found by reading the sources
(no import runs): every ground-floor, features, models or serving package it reaches is a dependency
as a whole folder, and each reached module of ``pipelines`` as a file (editing one stage's module does
not rerun the others). Editing any module a stage imports makes ``dvc status`` report that stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from core.config import REPO_ROOT
from pipelines.stages import RECORD_STAGES, Stage

PACKAGES = ("core", "features", "models", "serving", "pipelines")
WHOLE_FOLDERS = ("core", "features", "models", "serving")
HEADER = (
    "# Generated from pipelines/stages.py by `churn dvc-yaml`: edit the declaration there, not this file.\n"
    "# Each stage is one `churn` subcommand; `dvc repro` reruns what changed.\n"
    "# Run through `uv run dvc repro` so `churn` is on PATH.\n"
)


def module_file(module: str, root: Path = REPO_ROOT) -> Path | None:
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path) -> set[str]:
    """Project modules a source file imports, at any depth of the file (``from x import y`` may name a
    module ``x.y`` or a name in ``x``: both are tried)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in PACKAGES and module_file(n) is not None}
    return found


def closure(module: str) -> set[str]:
    """The module and every project module it imports, transitively (packages' __init__ included)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        todo += sorted(imported_modules(module_file(name)))
    return seen


def code_deps(stage: Stage) -> list[str]:
    modules = closure(stage.module)
    folders = sorted({m.split(".")[0] for m in modules} & set(WHOLE_FOLDERS))
    files = sorted(
        str(module_file(m).relative_to(REPO_ROOT))
        for m in modules
        if m.split(".")[0] not in WHOLE_FOLDERS and module_file(m).name != "__init__.py"
    )
    return folders + files


def stage_entry(stage: Stage) -> dict:
    entry: dict = {"cmd": f"churn {stage.name}"}
    deps = [*stage.deps, *code_deps(stage)]
    if deps:
        entry["deps"] = deps
    if stage.params:
        entry["params"] = [{"configs/default.yaml": list(stage.params)}]
    for key, outs in (
        ("outs", [o for o in stage.outs if not o.metric]),
        ("metrics", [o for o in stage.outs if o.metric]),
    ):
        if outs:
            entry[key] = [_out(o) for o in outs]
    return entry


def _out(o) -> str | dict:
    opts = {k: v for k, v in (("cache", o.cache), ("persist", o.persist)) if v != (k == "cache")}
    return {o.path: opts} if opts else o.path


def render(stages: tuple[Stage, ...] = RECORD_STAGES) -> str:
    body = yaml.safe_dump({"stages": {s.name: stage_entry(s) for s in stages}}, sort_keys=False)
    return HEADER + body


def write(path: Path = REPO_ROOT / "dvc.yaml") -> bool:
    """Write ``dvc.yaml``; True when it changed."""
    text = render()
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True
