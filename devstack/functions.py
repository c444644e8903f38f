"""The template's functions, run locally the way Lambda runs them.

Each function gets its own pool of worker processes, one per execution environment
(so MaximumConcurrency 5 means 5 processes). A worker imports the handler module from
the function's CodeUri with the layer's package on its path, with exactly the
environment the template gives that function, and keeps it between invocations as a
warm Lambda does. Two functions therefore never share a module, a cache or an
environment variable, as in AWS.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.lambda_context import LambdaContext
from devstack.template import TEMPLATE_PATH, load_template, resources_of_type

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

# Lambda's defaults, when neither Globals nor the function say otherwise.
_DEFAULT_TIMEOUT_S = 3
_DEFAULT_MEMORY_MB = 128

Resolver = Callable[[Any], str | None]


class FunctionError(RuntimeError):
    """The handler raised, as Lambda reports it: errorType and errorMessage."""

    def __init__(self, function: str, error_type: str, message: str):
        self.error_type = error_type
        super().__init__(f"{function} failed: {error_type}: {message}")


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str  # module.function, e.g. app.lambda_handler
    timeout_s: int
    memory_mb: int
    environment: dict[str, Any]  # unresolved template values
    events: dict[str, dict[str, Any]] = field(default_factory=dict)

    def events_of_type(self, *types: str) -> list[dict[str, Any]]:
        return [event for event in self.events.values() if event.get("Type") in types]


def function_specs(template_path: Path = TEMPLATE_PATH) -> dict[str, FunctionSpec]:
    template = load_template(template_path)
    globals_ = template.get("Globals", {}).get("Function", {})
    specs = {}
    for logical_id, resource in resources_of_type(template, "AWS::Serverless::Function").items():
        props = resource.get("Properties", {})
        environment = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_dir=(template_path.parent / props["CodeUri"]).resolve(),
            handler=props.get("Handler", globals_.get("Handler", "app.lambda_handler")),
            timeout_s=int(props.get("Timeout", globals_.get("Timeout", _DEFAULT_TIMEOUT_S))),
            memory_mb=int(props.get("MemorySize", globals_.get("MemorySize", _DEFAULT_MEMORY_MB))),
            environment=environment,
            events=props.get("Events", {}),
        )
    return specs


def resolve_environment(
    spec: FunctionSpec, resolve: Resolver, overrides: Mapping[str, str]
) -> dict[str, str]:
    """The function's variables with template references resolved by `resolve` (None
    drops the variable: it names something that exists only in AWS), then `overrides`."""
    resolved: dict[str, str] = {}
    for name, value in spec.environment.items():
        text = value if isinstance(value, str) else resolve(value)
        if text is not None:
            resolved[name] = str(text)
    resolved.update(overrides)
    return resolved


class LocalFunction:
    """A pool of execution environments for one function."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: Mapping[str, str],
        concurrency: int,
        log_path: Path | None = None,
    ):
        self.spec = spec
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
        outcome = self._pool.submit(
            _invoke,
            self._module,
            self._function,
            json.dumps(event),
            self.spec.logical_id,
            deadline_s,
            self.spec.memory_mb,
        ).result()
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
    os.environ.clear()
    os.environ.update(env)
    sys.path[:0] = paths
    if log_path:
        # The function's own output (Powertools' JSON logs, EMF metrics), as CloudWatch
        # would keep it, away from the terminal.
        stream = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        sys.stdout = sys.stderr = stream


def _invoke(
    module: str, function: str, event_json: str, name: str, timeout_s: float, memory_mb: int
) -> dict[str, Any]:
    handler = getattr(importlib.import_module(module), function)
    context = LambdaContext.for_invocation(name, timeout_s, memory_limit_in_mb=memory_mb)
    try:
        response = handler(json.loads(event_json), context)
    except Exception as exc:
        traceback.print_exc()
        return {"errorType": type(exc).__name__, "errorMessage": str(exc)}
    # Lambda serialises the response to JSON; so do we, to fail the same way it would.
    return {"response": json.loads(json.dumps(response))}
