"""P5: the import part of each function's cold start, against its floor.

Each function's handler module is imported in a fresh interpreter set up as its
execution environment (bench.environments), tracing active as the template sets it.
The baseline is a fresh interpreter that runs only the third-party import statements
found at the top level of the modules the handler loaded: what the function would cost
with no code of its own. The handler is imported a third way, with Powertools' Tracer
disabled (as under `sam local`), because an active Tracer patches every library the
X-Ray SDK supports, importing each one it finds. Medians of the repeats, after one
discarded run of each that compiles the bytecode. The import also tells which
functions load psycopg (the API and the schedule must not).
"""

from __future__ import annotations

import ast
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.environments import lambda_environment, run_child
from bench.measure import Progress, median, ratio
from devstack.function_specs import function_specs

NO_DATABASE_DRIVER = ("RefreshApiFunction", "ScheduledRefreshFunction")


def third_party_imports(files: list[str], first_party: set[str]) -> list[str]:
    """The module-level import statements of `files` that load third-party packages, as
    source, in order. Imports under `if TYPE_CHECKING:` and inside functions are not run
    at import time, so they are left out."""
    statements: list[str] = []
    for file in files:
        tree = ast.parse(Path(file).read_text(), filename=file)
        for node in _module_level(tree.body):
            if isinstance(node, ast.ImportFrom):
                roots = [] if node.level else [(node.module or "").split(".")[0]]
            else:
                roots = [alias.name.split(".")[0] for alias in node.names]
            if roots and all(_third_party(root, first_party) for root in roots):
                source = ast.unparse(node)
                if source not in statements:
                    statements.append(source)
    return statements


def _module_level(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.Try):
            found.extend(_module_level(node.body))
    return found


def _third_party(root: str, first_party: set[str]) -> bool:
    return root not in first_party and root not in sys.stdlib_module_names and root != "__future__"


def measure(repeats: int, progress: Progress) -> dict[str, Any]:
    functions: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as tmp:
        for logical_id, spec in sorted(function_specs().items()):
            progress(f"P5 {logical_id}: {repeats} fresh imports, and of its dependencies alone")
            module = spec.handler.rpartition(".")[0]
            env = lambda_environment(spec, Path(tmp) / "pycache")
            first = run_child("import", [module], env)
            statements = third_party_imports(first["first_party_files"], {module, "matchstats"})
            baseline = Path(tmp) / f"{logical_id}-baseline.py"
            baseline.write_text("\n".join(statements) + "\n")
            run_child("statements", [str(baseline)], env)

            # As `sam local` runs it: Powertools' Tracer disabled, so nothing is patched.
            untraced_env = {**env, "POWERTOOLS_TRACE_DISABLED": "true"}
            untraced = run_child("import", [module], untraced_env)

            handler_s, deps_s, untraced_s = [], [], []
            for _ in range(repeats):
                handler_s.append(run_child("import", [module], env)["seconds"])
                deps_s.append(run_child("statements", [str(baseline)], env)["seconds"])
                untraced_s.append(run_child("import", [module], untraced_env)["seconds"])
            functions[logical_id] = {
                "handler_import_ms": median(handler_s) * 1000,
                "dependencies_only_ms": median(deps_s) * 1000,
                "own_code_ms": (median(handler_s) - median(deps_s)) * 1000,
                "ratio": ratio(median(handler_s), median(deps_s)),
                "handler_import_tracing_disabled_ms": median(untraced_s) * 1000,
                "imports_psycopg": bool(first["psycopg"]),
                "imports_psycopg_tracing_disabled": bool(untraced["psycopg"]),
                "third_party_imports": statements,
                "samples_ms": {
                    "handler": [s * 1000 for s in handler_s],
                    "dependencies_only": [s * 1000 for s in deps_s],
                    "handler_tracing_disabled": [s * 1000 for s in untraced_s],
                },
            }
    return {
        "repeats": repeats,
        "functions": functions,
        "psycopg_free": {
            name: not functions[name]["imports_psycopg"] for name in NO_DATABASE_DRIVER
        },
        "meets_target": all(not functions[name]["imports_psycopg"] for name in NO_DATABASE_DRIVER),
    }
