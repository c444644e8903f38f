"""What the Lambda layer ships: the code and SQL the functions run, and nothing that only
the operator's command runs (issue 11, item 4). `sam build` packages the whole folder that
the template's ContentUri names, so whatever sits in it reaches every function."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from devstack.template import TEMPLATE_PATH, load_template

ROOT = TEMPLATE_PATH.parent
FUNCTIONS = ROOT / "functions"
# Layer modules no function imports, each shipped for a reason of its own.
EXPORTS = {
    # The application's scoring Lambda imports the producer helper (SPEC 3).
    "matchstats.producer",
    # The migrations ship beside the code whose tables they create; `matchstats migrate`
    # applies them from the same package.
    "matchstats.db.migrate",
}


def layer_folder() -> Path:
    layer = load_template()["Resources"]["MatchstatsLayer"]
    return ROOT / layer["Properties"]["ContentUri"]


def module_name(layer: Path, path: Path) -> str:
    parts = path.relative_to(layer).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module `path` imports, and for `from a import b` also `a.b` (b may be one)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules_the_functions_load(modules: dict[str, Path]) -> set[str]:
    """The layer's modules that the handlers import, directly or through each other."""
    loaded: set[str] = set()
    waiting = list(FUNCTIONS.glob("*/app.py"))
    while waiting:
        for name in imported_names(waiting.pop()) & modules.keys():
            if name not in loaded:
                loaded.add(name)
                waiting.append(modules[name])
    return loaded


def test_every_module_in_the_layer_is_loaded_by_a_function_or_exported() -> None:
    # Given the layer's folder as the template builds it, and its Python modules
    layer = layer_folder()
    modules = {
        module_name(layer, path): path
        for path in layer.rglob("*.py")
        if path.name != "__init__.py" or path.stat().st_size > 0
    }
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}

    # When following the handlers' imports through the layer
    loaded = modules_the_functions_load(modules)

    # Then every module ships for a function, or is one of the layer's own exports: the
    # operator's data access (ops.store) is not among them
    unused = set(modules) - loaded - packages - EXPORTS
    assert not unused, f"shipped to every function, loaded by none: {sorted(unused)}"


def test_every_sql_file_in_the_layer_is_run_by_its_code() -> None:
    # Given the layer's statement files and its modules
    layer = layer_folder()
    statements = {path.stem for path in (layer / "matchstats" / "db" / "sql").glob("*.sql")}
    code = "\n".join(path.read_text(encoding="utf-8") for path in layer.rglob("*.py"))

    # When collecting the statements the code loads by name
    loaded = set(re.findall(r'load_sql\("(\w+)"\)', code))

    # Then the layer holds exactly those: the operator's reads live in ops/sql/
    assert statements == loaded
