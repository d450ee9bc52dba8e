"""Arrows point down: core <- features <- models, serving <- pipelines; no module-level cycles.

Read from the sources (no import runs), every import at any depth of a file counts."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package -> the project packages it may import (itself included)
ALLOWED = {
    "core": {"core"},
    "features": {"core", "features"},
    "models": {"core", "features", "models"},
    "serving": {"core", "features", "models", "serving"},
    "pipelines": {"core", "features", "models", "serving", "pipelines"},
}
# modules that import inside functions, and why (the one comment in each says so too)
LAZY_IMPORTS_ALLOWED = {
    "features/engine.py": "PySpark is an optional extra, imported only when features.engine is spark",
    "features/store.py": "PySpark is an optional extra: Feast's Spark path only when features.engine is spark",
    "pipelines/ingest.py": "PySpark is an optional extra, imported only when features.engine is spark",
    "pipelines/feature_build.py": "PySpark is an optional extra, imported only when features.engine is spark",
    "pipelines/training.py": "PySpark is an optional extra, imported only when features.engine is spark",
    "pipelines/cli.py": "`churn --help` and each command import only what they use",
    "pipelines/warn.py": "PySpark is an optional extra, imported only when features.engine is spark",
    "serving/deploy.py": "the CLI imports it for serve / deployments / rollback, which need no MLflow or BentoML",
    "serving/middleware.py": "prometheus_client must be imported after the worker sets its multiprocess dir",
    "serving/monitoring_gauges.py": "prometheus_client, as in serving/middleware.py",
    "serving/service.py": "the server's main process reads the service definition without loading MLflow",
}


def _modules(root: Path):
    for pkg in ALLOWED:
        for path in sorted((root / pkg).rglob("*.py")):
            yield pkg, path


def _imports(tree: ast.AST, top_level_only: bool = False):
    nodes = ast.iter_child_nodes(tree) if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield node, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node, [node.module, *(f"{node.module}.{a.name}" for a in node.names)]


def upward_imports(root: Path) -> list[str]:
    """``file:line imports module`` for every import of a package its layer may not see."""
    bad = []
    for pkg, path in _modules(root):
        for node, names in _imports(ast.parse(path.read_text())):
            target = names[0].split(".")[0]
            if target in ALLOWED and target not in ALLOWED[pkg]:
                bad.append(f"{path.relative_to(root)}:{node.lineno} imports {names[0]}")
    return bad


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def module_level_cycles(root: Path) -> list[list[str]]:
    known = {_module_name(root, p): p for _, p in _modules(root)}
    graph = {
        name: {
            n
            for _, names in _imports(ast.parse(path.read_text()), top_level_only=True)
            for n in names
            if n in known and n != name
        }
        for name, path in known.items()
    }
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_layer_imports_a_higher_one():
    assert upward_imports(ROOT) == []


def test_no_module_level_import_cycles():
    assert module_level_cycles(ROOT) == []


def test_imports_inside_functions_only_where_they_keep_the_cli_fast():
    lazy = sorted(
        str(path.relative_to(ROOT))
        for _, path in _modules(ROOT)
        for fn in ast.walk(ast.parse(path.read_text()))
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(isinstance(n, ast.Import | ast.ImportFrom) for n in ast.walk(fn))
    )
    assert sorted(set(lazy) - set(LAZY_IMPORTS_ALLOWED)) == []


@pytest.mark.parametrize(
    "lower, source",
    [("core", "from pipelines.stages import run_all\n"), ("features", "def f():\n    import models.train\n")],
)
def test_the_check_catches_an_upward_import(tmp_path, lower, source):
    for pkg in ALLOWED:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / lower / "bad.py").write_text(source)
    assert len(upward_imports(tmp_path)) == 1


def test_the_check_catches_a_cycle(tmp_path):
    for pkg in ALLOWED:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "models" / "a.py").write_text("import models.b\n")
    (tmp_path / "models" / "b.py").write_text("from models.a import x\n")
    assert module_level_cycles(tmp_path) == [["models.a", "models.b", "models.a"]]


def test_only_spark_modules_import_pyspark():
    """PySpark is the optional `spark` extra: only modules named for Spark import it, and the DuckDB
    path reaches those only through the lazy imports listed above (no JVM starts on the default path:
    the README's main command runs with no Java in tests/test_readme.py)."""
    offenders = [
        rel
        for rel, tree in _parsed()
        if "spark" not in Path(rel).name
        and any(name.split(".")[0] in ("pyspark", "py4j") for name in _imported_names(tree))
    ]
    assert offenders == []


def _parsed():
    for layer in ("core", "features", "models", "serving", "pipelines"):
        for path in sorted((ROOT / layer).glob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())


def _imported_names(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
