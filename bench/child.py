"""What the benchmark runs in a fresh interpreter, as a Lambda execution environment
starts: `python -m bench.child <command> <result file> ...`.

- import <module>: times importing the handler module; which modules it loaded.
- statements <file>: times running only the given import statements (the baseline),
  and reports the peak RSS they lead to.
- invoke <module> <event file>: imports the handler, invokes it once with the event
  and reports peak RSS before the import, after it, and after the invocation.

Only the standard library is imported before the clock starts. The result goes to a
file because the handlers log to stdout.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _peak_rss_kb() -> int:
    """This process's peak resident set size. On Linux, VmHWM: getrusage's ru_maxrss
    carries the parent's peak over fork and exec, so a small child would report the
    benchmark's own peak."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _first_party_files(prefixes: tuple[str, ...]) -> list[str]:
    files = (
        getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if name.split(".", 1)[0] in prefixes
    )
    return sorted(file for file in files if file)


def import_module(module: str) -> dict[str, Any]:
    started = time.perf_counter()
    importlib.import_module(module)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "psycopg": "psycopg" in sys.modules,
        "first_party_files": _first_party_files((module, "matchstats")),
    }


def run_statements(source_file: str) -> dict[str, Any]:
    source = Path(source_file).read_text()
    code = compile(source, "<baseline imports>", "exec")
    started = time.perf_counter()
    exec(code, {})  # noqa: S102 - our own generated import statements
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "psycopg": "psycopg" in sys.modules, "rss_peak_kb": _peak_rss_kb()}


def invoke(module: str, event_file: str, function_name: str, timeout_s: str) -> dict[str, Any]:
    from devstack.lambda_context import LambdaContext  # stdlib only, before the baseline

    event = json.loads(Path(event_file).read_text())
    at_start = _peak_rss_kb()
    handler = importlib.import_module(module).lambda_handler
    after_import = _peak_rss_kb()
    psycopg_at_import = "psycopg" in sys.modules
    context = LambdaContext.for_invocation(function_name, float(timeout_s))
    started = time.perf_counter()
    response = handler(event, context)
    seconds = time.perf_counter() - started
    return {
        "rss_start_kb": at_start,
        "rss_after_import_kb": after_import,
        "rss_peak_kb": _peak_rss_kb(),
        "invocation_s": seconds,
        "psycopg_at_import": psycopg_at_import,
        "psycopg_after_invocation": "psycopg" in sys.modules,
        "response": response,
    }


def main(argv: list[str]) -> None:
    command, result_file, *args = argv
    commands: dict[str, Callable[..., dict[str, Any]]] = {
        "import": import_module,
        "statements": run_statements,
        "invoke": invoke,
    }
    result = commands[command](*args)
    Path(result_file).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
