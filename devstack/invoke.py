"""`make invoke`: the Docker-free equivalent of `sam local invoke`.

    python -m devstack.invoke --function CalculatePointsFunction \\
        --event events/calculate-points.json [--env-vars env.json] [--no-build]

It runs `sam build --cached` (skipped when no source changed since the last one), then
serves the built function with the AWS Lambda Runtime Interface Emulator (RIE) that ships
inside aws-sam-cli's wheel, running `awslambdaric` on the template's runtime Python,
posts the event once and stops the emulator. The function sees
its code at the front of sys.path and the built layer (Lambda's /opt/python) behind it,
so its dependencies come from the layer as in Lambda, and an environment built from
template.yaml and env.json. The response goes to stdout; the emulator's START/END/REPORT
lines and the function's logs go to stderr, as with `sam local invoke`.

It starts no services. While `make dev` runs, the function gets that stack's database, SQS
endpoint and queues (from .devstack/dev.env, or from a shell that sourced it); otherwise
env.json, which points at PostgreSQL on 127.0.0.1:5432 and SQS on 127.0.0.1:4566. An
--env-vars file overrides either. The exit status is 1 when the function errors, 3 when
it reports batch item failures. Local tooling; never shipped to Lambda.

One responsibility, kept whole past 350 lines: one `make invoke` run (build if stale,
the function's environment, the emulator, one event, its exit status).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devstack import devenv
from devstack.function_specs import (
    FunctionSpec,
    environment_string,
    function_specs_of,
    parameter_resolver,
    resolve_environment,
)
from devstack.lambda_context import LOCAL_ACCOUNT_ID
from devstack.rie import (
    Emulator,
    EmulatorError,
    batch_item_failure_count,
    find_rie,
    function_error,
)
from devstack.sam_build import (
    BUILD_DIR,
    REPO,
    BuildError,
    build_is_current,
    built_function,
    record_build,
    sam_build,
    sources_digest,
)
from devstack.template import TEMPLATE_PATH, load_template

SAM_BIN_ENV = "MATCHSTATS_SAM_BIN"
RUNTIME_PYTHON_ENV = "MATCHSTATS_RUNTIME_PYTHON"
DEFAULT_SAM = REPO / ".venv-sam" / "bin" / "sam"
DEFAULT_RUNTIME_PYTHON = REPO / ".venv-runtime" / "bin" / "python"

# What `sam local invoke` gives a function whose environment leaves these out.
DEFAULT_REGION = "us-east-1"
SAM_DEFAULT_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "defaultkey",
    "AWS_SECRET_ACCESS_KEY": "defaultsecret",
}

DEFAULT_ENV_VARS = REPO / "env.json"
# The invocation succeeded but some records failed (distinct from a function error, 1).
EXIT_BATCH_ITEM_FAILURES = 3

# Beyond the function timeout: the cold start (init) is not part of it.
_HTTP_MARGIN_S = 30.0
_USAGE_ERROR = 2


class InvokeError(Exception):
    """A failure told to the user in one line; `exit_code` 2 is a usage error."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def chosen_function(specs: Mapping[str, FunctionSpec], logical_id: str) -> FunctionSpec:
    known = "the template's functions: " + ", ".join(sorted(specs))
    if not logical_id:
        raise InvokeError(f"no function given (FN=<id> or --function); {known}", _USAGE_ERROR)
    if logical_id not in specs:
        raise InvokeError(f"unknown function {logical_id!r}; {known}", _USAGE_ERROR)
    return specs[logical_id]


def env_file_overrides(path: Path | None, logical_id: str) -> dict[str, str]:
    """The `--env-vars` file of `sam local invoke`: "Parameters" for every function, then
    the function's own entry (by logical id), the latter winning."""
    if path is None:
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvokeError(f"environment file {path} does not exist", _USAGE_ERROR) from exc
    except json.JSONDecodeError as exc:
        raise InvokeError(f"environment file {path} is not JSON: {exc}", _USAGE_ERROR) from exc
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise InvokeError(
            f'environment file {path} must map a logical id (or "Parameters") to variables',
            _USAGE_ERROR,
        )
    overrides: dict[str, str] = {}
    for section in ("Parameters", logical_id):
        for name, value in (document.get(section) or {}).items():
            text = environment_string(value)
            if text is None:
                raise InvokeError(f"{path}: {section}.{name} must be a string", _USAGE_ERROR)
            overrides[name] = text
    return overrides


def local_stack_overrides(spec: FunctionSpec, local: devenv.DevEnvironment) -> dict[str, str]:
    """The running `make dev` stack as an env file would give it to this function: its
    database, SQS endpoint and dummy credentials, each queue the template names by !Ref
    (so DEAD_LETTER_QUEUE_URL is the function's own dead-letter queue), and the cron
    secret where the function declares one."""
    overrides = {
        name: local.variables[name]
        for name in devenv.CONNECTION_VARIABLES
        if name in local.variables
    }
    for name, value in spec.environment.items():
        target = value.get("Ref") if isinstance(value, dict) else None
        url = local.queue_url(target) if isinstance(target, str) else None
        if url:
            overrides[name] = url
    if "CRON_SECRET" in spec.environment and "CRON_SECRET" in local.variables:
        overrides["CRON_SECRET"] = local.variables["CRON_SECRET"]
    return overrides


def function_region(overrides: Mapping[str, str], shell: Mapping[str, str]) -> str:
    for source in (overrides, shell):
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            if source.get(name):
                return source[name]
    return DEFAULT_REGION


def function_environment(
    spec: FunctionSpec,
    template: Mapping[str, Any],
    overrides: Mapping[str, str],
    shell: Mapping[str, str],
) -> dict[str, str]:
    """The variables the function runs with, in `sam local invoke`'s order of precedence:
    Lambda's own AWS_* variables, the template's (a declared variable takes the shell's
    value when the shell sets it), then the env file. Unlike SAM CLI, the env file may
    add variables the template does not declare (DATABASE_URL, AWS_ENDPOINT_URL): that is
    how the local stack is reached without putting local URLs in the template. A template
    reference to a resource (a queue's URL, a secret's ARN) stays unset unless the env
    file sets it, since only a deployment knows it."""
    region = function_region(overrides, shell)
    if shell.get("AWS_ACCESS_KEY_ID") and shell.get("AWS_SECRET_ACCESS_KEY"):
        credentials = {
            name: shell[name]
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
            if shell.get(name)
        }
    else:
        credentials = dict(SAM_DEFAULT_CREDENTIALS)
    declared_in_shell = {name: shell[name] for name in spec.environment if name in shell}
    variables = resolve_environment(
        spec, parameter_resolver(template, region), {**declared_in_shell, **overrides}
    )
    return {
        "AWS_SAM_LOCAL": "true",
        "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout_s),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_HANDLER": spec.handler,
        "AWS_LAMBDA_LOG_GROUP_NAME": f"aws/lambda/{spec.logical_id}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        "AWS_ACCOUNT_ID": LOCAL_ACCOUNT_ID,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        **credentials,
        # A Lambda sandbox has no ~/.aws; the developer's profiles must not leak in.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        **variables,
    }


def read_event(path_text: str) -> bytes:
    events = sorted(str(p.relative_to(REPO)) for p in (REPO / "events").glob("*.json"))
    if not path_text:
        raise InvokeError(
            "no event given (EVENT=events/<file>.json or --event); the events: "
            + ", ".join(events),
            _USAGE_ERROR,
        )
    path = Path(path_text)
    try:
        event = path.read_bytes()
    except OSError as exc:
        raise InvokeError(
            f"cannot read event {path}: {exc.strerror}; the events: " + ", ".join(events),
            _USAGE_ERROR,
        ) from exc
    try:
        json.loads(event)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvokeError(f"event {path} is not JSON: {exc}", _USAGE_ERROR) from exc
    return event


def _runtime_version(runtime_python: Path) -> str:
    try:
        result = subprocess.run(
            [str(runtime_python), "-c", "import sys; print('python%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise InvokeError(
            f"no runtime Python at {runtime_python} (make runtime-venv creates it)"
        ) from exc
    return result.stdout.strip()


def _say(message: str) -> None:
    print(f"invoke: {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.invoke",
        description="Build one function of template.yaml and invoke it once with an event, "
        "under the Lambda Runtime Interface Emulator (no Docker).",
    )
    parser.add_argument("--function", default="", help="logical id in template.yaml")
    parser.add_argument("--event", default="", help="event JSON file, e.g. events/<file>.json")
    parser.add_argument(
        "--env-vars",
        type=Path,
        default=None,
        help="`sam local invoke --env-vars` file: {LogicalId: {NAME: value}, Parameters: {...}}",
    )
    parser.add_argument("--no-build", action="store_true", help="use the existing build")
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    parser.add_argument("--sam", type=Path, default=Path(os.environ.get(SAM_BIN_ENV, DEFAULT_SAM)))
    parser.add_argument(
        "--runtime-python",
        type=Path,
        default=Path(os.environ.get(RUNTIME_PYTHON_ENV, DEFAULT_RUNTIME_PYTHON)),
        help="the template runtime's Python with awslambdaric installed",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args)
    except InvokeError as exc:
        _say(str(exc))
        return exc.exit_code
    except BuildError as exc:
        sys.stderr.write(exc.output)
        _say(str(exc))
        return 1
    except EmulatorError as exc:
        _say(str(exc))
        return 1


def _run(args: argparse.Namespace) -> int:
    shell = dict(os.environ)
    template = load_template(TEMPLATE_PATH)
    spec = chosen_function(function_specs_of(template, REPO), args.function)
    event = read_event(args.event)
    # Where the function's services are: the `make dev` stack this shell sourced, or the
    # one running now, then an env file given explicitly (it wins); without either,
    # the repository's env.json (127.0.0.1:5432 and :4566).
    local = devenv.from_environment(shell) or devenv.running(devenv.env_file(shell))
    if local is not None:
        _say(f"using the running `make dev` stack (process {local.pid})")
    env_vars = args.env_vars
    if env_vars is None and local is None:
        env_vars = DEFAULT_ENV_VARS
        _say(
            f"no `make dev` stack is running: using {env_vars.name}, which expects"
            " PostgreSQL on 127.0.0.1:5432 and SQS on 127.0.0.1:4566"
        )
    overrides = {
        **(local_stack_overrides(spec, local) if local is not None else {}),
        **env_file_overrides(env_vars, args.function),
    }

    runtime_python = args.runtime_python.absolute()
    version = _runtime_version(runtime_python)
    if version != spec.runtime:
        raise InvokeError(
            f"{spec.logical_id} runs on {spec.runtime or 'no runtime'} but {runtime_python} is "
            f"{version} (make runtime-venv rebuilds it for the template's runtime)"
        )
    sam = args.sam.absolute()
    rie = find_rie(sam, spec.architecture)
    build_dir = args.build_dir.absolute()
    if not args.no_build:
        _build_unless_current(template, sam, runtime_python, build_dir)
    built = built_function(build_dir, spec.logical_id)
    for layer in built.left_out:
        _say(f"warning: layer {layer!r} is not built from this template; left out")

    emulator = Emulator(
        rie,
        runtime_python,
        built,
        spec.handler,
        function_environment(spec, template, overrides, shell),
        echo=sys.stderr,
        say=_say,
        bytecode_cache=build_dir.parent / "pycache",
    )
    started = time.monotonic()
    try:
        emulator.start()
        body = emulator.invoke(event, spec.timeout_s + _HTTP_MARGIN_S)
    finally:
        emulator.stop()
    _say(f"invoked {spec.logical_id} in {time.monotonic() - started:.2f} s")

    sys.stdout.write(body.decode(errors="replace") + "\n")
    sys.stdout.flush()
    error = function_error(body)
    if error is not None:
        raise InvokeError(f"{spec.logical_id} failed: {error}")
    if not any(line.startswith("REPORT RequestId:") for line in emulator.lines):
        raise InvokeError("the emulator answered but printed no REPORT line")
    failures = batch_item_failure_count(body)
    if failures:
        # A successful invocation for Lambda, which retries only these records; but the
        # event did not do what it was sent for, so the exit status says so.
        raise InvokeError(
            f"{spec.logical_id} reported {failures} batch item failure(s): Lambda would"
            " retry them; see its logs above",
            EXIT_BATCH_ITEM_FAILURES,
        )
    return 0


def _build_unless_current(
    template: dict[str, Any], sam: Path, runtime_python: Path, build_dir: Path
) -> None:
    digest = sources_digest(template, runtime_python)
    if build_is_current(build_dir, digest):
        _say(f"the build in {build_dir} is up to date")
        return
    _say("sam build --cached ...")
    started = time.monotonic()
    sam_build(sam, runtime_python, build_dir)
    _say(f"built in {time.monotonic() - started:.1f} s")
    record_build(build_dir, digest)


if __name__ == "__main__":
    sys.exit(main())
