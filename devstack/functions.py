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

from devstack.lambda_context import LOCAL_ACCOUNT_ID, LambdaContext
from devstack.processes import set_parent_death_signal
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
_DEFAULT_ARCHITECTURE = "x86_64"

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_LAYER = "AWS::Serverless::LayerVersion"

Resolver = Callable[[Any], str | None]


class FunctionError(RuntimeError):
    """The handler raised, as Lambda reports it: errorType and errorMessage."""

    def __init__(self, function: str, error_type: str, message: str):
        self.error_type = error_type
        super().__init__(f"{function} failed: {error_type}: {message}")


@dataclass(frozen=True)
class FunctionSpec:
    """One AWS::Serverless::Function of a template, its Globals applied."""

    logical_id: str
    code_dir: Path
    handler: str  # module.function, e.g. app.lambda_handler
    runtime: str  # e.g. python3.13
    architecture: str  # x86_64 or arm64
    timeout_s: int
    memory_mb: int
    environment: dict[str, Any]  # unresolved template values
    # The ContentUri of each layer that the same template builds, in the function's order;
    # any other layer (a published one's ARN) as written, in `external_layers`.
    layer_dirs: tuple[Path, ...] = ()
    external_layers: tuple[Any, ...] = ()
    events: dict[str, dict[str, Any]] = field(default_factory=dict)

    def events_of_type(self, *types: str) -> list[dict[str, Any]]:
        return [event for event in self.events.values() if event.get("Type") in types]


def function_specs(template_path: Path = TEMPLATE_PATH) -> dict[str, FunctionSpec]:
    return function_specs_of(load_template(template_path), template_path.parent)


def function_specs_of(template: dict[str, Any], base_dir: Path) -> dict[str, FunctionSpec]:
    """function_specs() of a template already read; its CodeUri and ContentUri paths are
    relative to `base_dir`."""
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    layers_built_here = resources_of_type(template, SERVERLESS_LAYER)
    specs = {}
    for logical_id, resource in resources_of_type(template, SERVERLESS_FUNCTION).items():
        own = resource.get("Properties") or {}
        properties = {**globals_, **own}
        # SAM merges Globals' variables into the function's rather than replacing them.
        environment = {**_variables(globals_), **_variables(own)}
        layer_dirs, external_layers = _split_layers(
            properties.get("Layers") or [], layers_built_here, base_dir
        )
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_dir=(base_dir / own["CodeUri"]).resolve(),
            handler=properties.get("Handler", "app.lambda_handler"),
            runtime=str(properties.get("Runtime", "")),
            architecture=str((properties.get("Architectures") or [_DEFAULT_ARCHITECTURE])[0]),
            timeout_s=int(properties.get("Timeout", _DEFAULT_TIMEOUT_S)),
            memory_mb=int(properties.get("MemorySize", _DEFAULT_MEMORY_MB)),
            environment=environment,
            layer_dirs=layer_dirs,
            external_layers=external_layers,
            events=own.get("Events", {}),
        )
    return specs


def _split_layers(
    layers: list[Any], built_here: Mapping[str, dict[str, Any]], base_dir: Path
) -> tuple[tuple[Path, ...], tuple[Any, ...]]:
    """The content dirs of the layers that the template builds, and the other layers."""
    dirs, others = [], []
    for layer in layers:
        name = layer.get("Ref") if isinstance(layer, dict) else None
        if isinstance(name, str) and name in built_here:
            dirs.append((base_dir / str(built_here[name]["Properties"]["ContentUri"])).resolve())
        else:
            others.append(layer)
    return tuple(dirs), tuple(others)


def _variables(properties: Mapping[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = (properties.get("Environment") or {}).get("Variables") or {}
    return variables


def resolve_environment(
    spec: FunctionSpec, resolve: Resolver, overrides: Mapping[str, str]
) -> dict[str, str]:
    """The function's variables: literals as SAM CLI writes them, template references
    resolved by `resolve` (None drops the variable: it names something that exists only
    in AWS), then `overrides`."""
    resolved: dict[str, str] = {}
    for name, value in spec.environment.items():
        text = resolve(value) if isinstance(value, dict) else environment_string(value)
        if text is not None:
            resolved[name] = text
    resolved.update(overrides)
    return resolved


def parameter_resolver(template: Mapping[str, Any], region: str) -> Resolver:
    """A resolver of what the template alone answers: a !Ref to a pseudo parameter or to
    a parameter with a default. Anything else (a queue's URL, a secret's ARN, a parameter
    without a default) only a deployment knows: None."""
    parameters = template.get("Parameters") or {}
    pseudo_parameters = {
        "AWS::Region": region,
        "AWS::AccountId": LOCAL_ACCOUNT_ID,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }

    def resolve(value: Any) -> str | None:
        if not isinstance(value, dict) or set(value) != {"Ref"}:
            return None
        name = value["Ref"]
        if name in pseudo_parameters:
            return pseudo_parameters[name]
        parameter = parameters.get(name)
        if not isinstance(parameter, dict) or "Default" not in parameter:
            return None
        return environment_string(parameter["Default"])

    return resolve


def environment_string(value: Any) -> str | None:
    """A template or env.json value as SAM CLI puts it in the environment (a boolean
    as true or false, null as empty); None for a list or a map, which it cannot."""
    if isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


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
