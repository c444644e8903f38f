"""Fresh interpreters set up as Lambda sets up a function's execution environment: the
function's folder and the layer on the path, the template's variables, the variables
Lambda itself sets (so that Powertools' Tracer is active, as with `Tracing: Active`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from devstack.function_specs import FunctionSpec, parameter_resolver, resolve_environment
from devstack.functions import LAYER_PATH, ROOT
from devstack.lambda_context import LOCAL_ACCOUNT_ID, LOCAL_REGION
from devstack.template import TEMPLATE_PATH, load_template

CHILD_TIMEOUT_S = 120
# A well-formed X-Ray trace header: an active trace's segment for the SDK to attach to.
_TRACE_HEADER = "Root=1-6747a2c0-0c1d6f2a4b5e7f8091a2b3c4;Parent=53995c3f42cd8ad8;Sampled=1"


class ChildError(RuntimeError):
    pass


def template_resolver(queue_urls: Mapping[str, str]) -> Callable[[Any], str]:
    """Resolves a template reference: a queue to its URL in `queue_urls` (else an AWS-shaped
    one), a parameter to its default, anything else to a placeholder of its kind (the
    secrets' ARNs, which a function reads only when it uses them)."""
    parameters = parameter_resolver(load_template(TEMPLATE_PATH), LOCAL_REGION)

    def resolve(value: Any) -> str:
        target = value.get("Ref") if isinstance(value, dict) else None
        name = target if isinstance(target, str) else json.dumps(value, sort_keys=True)
        if name in queue_urls:
            return queue_urls[name]
        known = parameters(value)
        if known is not None:
            return known
        if name.endswith("Queue"):
            return f"https://sqs.{LOCAL_REGION}.amazonaws.com/{LOCAL_ACCOUNT_ID}/{name}"
        return f"arn:aws:secretsmanager:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:secret:bench-{name}"

    return resolve


def lambda_environment(
    spec: FunctionSpec,
    pycache_dir: Path,
    queue_urls: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of `spec`'s execution environment; `queue_urls` and `overrides`
    point it at local services."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {
        **{name: os.environ[name] for name in keep if name in os.environ},
        **resolve_environment(spec, template_resolver(queue_urls or {}), overrides or {}),
        "PYTHONPATH": os.pathsep.join([str(spec.code_dir), str(LAYER_PATH)]),
        # Every run reads the same compiled bytecode, written by a first, discarded run:
        # as a layer built with .pyc files would be read.
        "PYTHONPYCACHEPREFIX": str(pycache_dir),
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout_s),
        "AWS_REGION": LOCAL_REGION,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "_X_AMZN_TRACE_ID": _TRACE_HEADER,
    }


def run_child(command: str, args: list[str], env: Mapping[str, str]) -> dict[str, Any]:
    """Runs `python -m bench.child command ...` in a fresh interpreter; returns its result."""
    with tempfile.TemporaryDirectory(prefix="bench-child-") as tmp:
        result_file = Path(tmp) / "result.json"
        process = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.child", command, str(result_file), *args],
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        if process.returncode != 0 or not result_file.exists():
            raise ChildError(
                f"bench.child {command} {' '.join(args)} failed with exit code"
                f" {process.returncode}:\n{process.stderr[-3000:]}"
            )
        result: dict[str, Any] = json.loads(result_file.read_text())
        return result
