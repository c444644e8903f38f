"""The template's functions, run locally the way Lambda runs them.

Each function gets its own pool of worker processes, one per execution environment
(so MaximumConcurrency 5 means 5 processes). A worker imports the handler module from
the function's CodeUri with the layer's package on its path, with exactly the
environment the template gives that function, and keeps it between invocations as a
warm Lambda does. Two functions therefore never share a module, a cache or an
environment variable, as in AWS. What the template says of each function (FunctionSpec)
is devstack/function_specs.py's.
"""

from __future__ import annotations

import importlib
import io
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from devstack.function_specs import FunctionSpec
from devstack.lambda_context import LambdaContext
from devstack.processes import set_parent_death_signal
from devstack.template import TEMPLATE_PATH

ROOT = TEMPLATE_PATH.parent
LAYER_PATH = ROOT / "layers" / "matchstats"

# Imported once by the fork server that every execution environment is forked from, so
# a cold start costs what importing the function's own code costs (our modules read
# their environment at import time, so only third-party libraries are preloaded).
_PRELOAD = [
    "boto3",
    "botocore.session",
    "pydantic",
    "psycopg",
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.parser.models",
    "aws_xray_sdk.core",
    "aws_lambda_powertools.utilities.parameters",
    "aws_lambda_powertools.event_handler",
]


class FunctionError(RuntimeError):
    """The handler raised, as Lambda reports it: errorType and errorMessage."""

    def __init__(self, function: str, error_type: str, message: str):
        self.error_type = error_type
        super().__init__(f"{function} failed: {error_type}: {message}")


@dataclass(frozen=True)
class Invocation:
    """One invocation as it ended, for a one-line summary: the event's records (1 for an
    event without Records), the EMF metrics the function emitted (name -> sum of values),
    its response, or the error it raised, and how long it took."""

    function: str
    records: int
    milliseconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    response: Any = None
    error: str | None = None


Observer = Callable[[Invocation], None]


class LocalFunction:
    """A pool of execution environments for one function."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: Mapping[str, str],
        concurrency: int,
        log_path: Path | None = None,
        observer: Observer | None = None,
    ):
        self.spec = spec
        self._observer = observer
        module, _, function = spec.handler.rpartition(".")
        self._module, self._function = module, function
        env = {
            **_process_basics(),
            **environment,
            "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout_s),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        }
        self._pool = ProcessPoolExecutor(
            max_workers=concurrency,
            # Forked from a clean server process, never from this one with its threads.
            mp_context=_context(),
            initializer=_start_environment,
            initargs=(env, [str(spec.code_dir), str(LAYER_PATH)], str(log_path or "")),
        )
        self._concurrency = concurrency

    def warm(self) -> None:
        """Starts every environment and imports the handler (the cold starts) now."""
        warming = [self._pool.submit(_import, self._module) for _ in range(self._concurrency)]
        for future in warming:
            future.result()

    def invoke(self, event: dict[str, Any], context: LambdaContext | None = None) -> Any:
        """Runs one invocation in a free environment and returns the handler's response.
        Raises FunctionError when the handler raised."""
        deadline_s = context.timeout_s if context else float(self.spec.timeout_s)
        started = time.monotonic()
        outcome = self._pool.submit(
            _invoke,
            self._module,
            self._function,
            json.dumps(event),
            self.spec.logical_id,
            deadline_s,
            self.spec.memory_mb,
        ).result()
        if self._observer is not None:
            records = event.get("Records")
            self._observer(
                Invocation(
                    function=self.spec.logical_id,
                    records=len(records) if isinstance(records, list) else 1,
                    milliseconds=(time.monotonic() - started) * 1000,
                    metrics=outcome.get("metrics", {}),
                    response=outcome.get("response"),
                    error=(
                        f"{outcome['errorType']}: {outcome['errorMessage']}"
                        if "errorType" in outcome
                        else None
                    ),
                )
            )
        if "errorType" in outcome:
            raise FunctionError(self.spec.logical_id, outcome["errorType"], outcome["errorMessage"])
        return outcome["response"]

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> Any:
        """The handler signature, so an event source mapping can call it directly."""
        return self.invoke(event, context)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _process_basics() -> dict[str, str]:
    # What any process needs to run at all; nothing of the developer's AWS identity.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONHASHSEED", "VIRTUAL_ENV")
    return {name: os.environ[name] for name in keep if name in os.environ}


def _context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def _import(module: str) -> None:
    importlib.import_module(module)


def _start_environment(env: dict[str, str], paths: list[str], log_path: str) -> None:
    _end_with_the_fork_server()
    os.environ.clear()
    os.environ.update(env)
    sys.path[:0] = paths
    if log_path:
        _write_output_to(log_path)


def _end_with_the_fork_server() -> None:
    """This environment is killed when the fork server it was forked from ends, which
    the fork server does as soon as the process that started it is gone (its `alive`
    pipe closes): a stack killed with SIGKILL leaves no environment behind. Without
    this an environment would wait on its call queue forever, since it holds that
    queue's write end itself."""
    set_parent_death_signal(signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is not None and not parent.is_alive():
        os._exit(1)  # the stack died before the signal was armed


def _write_output_to(log_path: str) -> None:
    """The function's own output (Powertools' JSON logs, EMF metrics), as CloudWatch
    would keep it, away from the terminal: file descriptors 1 and 2 themselves, not only
    sys.stdout and sys.stderr. A stream opened before this runs still writes to them:
    multiprocessing imports the parent's __main__ module (devstack.dev, which imports the
    layer) into each new process before the initializer, so Powertools' Logger may
    already hold the fork server's stdout, the terminal."""
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # Line-buffered, so that each line is in the file as soon as it is written.
    sys.stdout = sys.stderr = os.fdopen(1, "w", buffering=1, closefd=False)


def _invoke(
    module: str, function: str, event_json: str, name: str, timeout_s: float, memory_mb: int
) -> dict[str, Any]:
    handler = getattr(importlib.import_module(module), function)
    context = LambdaContext.for_invocation(name, timeout_s, memory_limit_in_mb=memory_mb)
    emitted = _EmfTee(sys.stdout)
    sys.stdout = emitted
    try:
        response = handler(json.loads(event_json), context)
    except Exception as exc:
        traceback.print_exc()
        return {
            "errorType": type(exc).__name__,
            "errorMessage": str(exc),
            "metrics": emitted.metrics,
        }
    finally:
        sys.stdout = emitted.stream
    # Lambda serialises the response to JSON; so do we, to fail the same way it would.
    return {"response": json.loads(json.dumps(response)), "metrics": emitted.metrics}


class _EmfTee(io.TextIOBase):
    """Passes the function's output through, and sums the metrics of its EMF lines (the
    JSON objects with an `_aws` key that Powertools Metrics prints, which CloudWatch
    turns into metrics): name -> the sum of its values in this invocation."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.metrics: dict[str, float] = {}
        self._partial = ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._read(line)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def _read(self, line: str) -> None:
        if '"_aws"' not in line:
            return
        try:
            document = json.loads(line)
            definitions = document["_aws"]["CloudWatchMetrics"]
            names = [m["Name"] for d in definitions for m in d["Metrics"]]
        except (ValueError, KeyError, TypeError):
            return
        for name in names:
            values = document.get(name)
            for value in values if isinstance(values, list) else [values]:
                if isinstance(value, int | float):
                    self.metrics[name] = self.metrics.get(name, 0.0) + float(value)
