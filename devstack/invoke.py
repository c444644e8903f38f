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

It starts no services: env.json points the function at PostgreSQL on 127.0.0.1:5432 and
SQS on 127.0.0.1:4566, which `make dev` provides. Local tooling; never shipped to Lambda.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devstack.template import load_template, resources_of_type

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"
BUILD_DIR = REPO / ".aws-sam" / "build"
SAM_BIN_ENV = "MATCHSTATS_SAM_BIN"
RUNTIME_PYTHON_ENV = "MATCHSTATS_RUNTIME_PYTHON"
DEFAULT_SAM = REPO / ".venv-sam" / "bin" / "sam"
DEFAULT_RUNTIME_PYTHON = REPO / ".venv-runtime" / "bin" / "python"

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_LAYER = "AWS::Serverless::LayerVersion"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
LOOPBACK = "127.0.0.1"

# What `sam local invoke` gives a function whose template leaves these out.
DEFAULT_TIMEOUT_S = 3
DEFAULT_MEMORY_MB = 128
DEFAULT_REGION = "us-east-1"
LOCAL_ACCOUNT_ID = "123456789012"
SAM_DEFAULT_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "defaultkey",
    "AWS_SECRET_ACCESS_KEY": "defaultsecret",
}

_READY_TIMEOUT_S = 10.0
_START_ATTEMPTS = 3
# The emulator prints END and REPORT around the time it answers; wait this long for them.
_REPORT_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 5.0
# Beyond the function timeout: the cold start (init) is not part of it.
_HTTP_MARGIN_S = 30.0
_USAGE_ERROR = 2


class InvokeError(Exception):
    """A failure told to the user in one line; `exit_code` 2 is a usage error."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------------- the function


@dataclass(frozen=True)
class FunctionSpec:
    """One AWS::Serverless::Function of the template, Globals applied."""

    logical_id: str
    runtime: str
    handler: str
    timeout_s: int
    memory_mb: int
    architecture: str
    # Environment.Variables that resolve locally (literals and parameter defaults);
    # `declared` also holds those that do not, such as !Ref to a queue.
    variables: dict[str, str] = field(default_factory=dict)
    declared: frozenset[str] = frozenset()


def function_spec(template: Mapping[str, Any], logical_id: str, region: str) -> FunctionSpec:
    functions = resources_of_type(dict(template), SERVERLESS_FUNCTION)
    known = "the template's functions: " + ", ".join(sorted(functions))
    if not logical_id:
        raise InvokeError(f"no function given (FN=<id> or --function); {known}", _USAGE_ERROR)
    if logical_id not in functions:
        raise InvokeError(f"unknown function {logical_id!r}; {known}", _USAGE_ERROR)
    globals_ = _function_globals(template)
    own = functions[logical_id].get("Properties") or {}
    properties = {**globals_, **own}
    # SAM merges Globals' variables into the function's rather than replacing them.
    raw_variables = {**_variables(globals_), **_variables(own)}
    parameters = template.get("Parameters") or {}
    variables = {}
    for name, value in raw_variables.items():
        resolved = _resolve(value, parameters, region)
        if resolved is not None:
            variables[name] = resolved
    architectures = properties.get("Architectures") or ["x86_64"]
    return FunctionSpec(
        logical_id=logical_id,
        runtime=str(properties.get("Runtime", "")),
        handler=str(properties.get("Handler", "")),
        timeout_s=int(properties.get("Timeout", DEFAULT_TIMEOUT_S)),
        memory_mb=int(properties.get("MemorySize", DEFAULT_MEMORY_MB)),
        architecture=str(architectures[0]),
        variables=variables,
        declared=frozenset(raw_variables),
    )


def _function_globals(template: Mapping[str, Any]) -> dict[str, Any]:
    globals_: dict[str, Any] = (template.get("Globals") or {}).get("Function") or {}
    return globals_


def _variables(properties: Mapping[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = (properties.get("Environment") or {}).get("Variables") or {}
    return variables


def _layer_refs(template: Mapping[str, Any], properties: Mapping[str, Any]) -> list[Any]:
    layers: list[Any] = properties.get("Layers", _function_globals(template).get("Layers")) or []
    return layers


def _resolve(value: Any, parameters: Mapping[str, Any], region: str) -> str | None:
    """A variable's value as Lambda would see it, or None when only a deployment knows it
    (a queue URL, a secret ARN, a parameter without a default)."""
    if isinstance(value, dict):
        if set(value) != {"Ref"}:
            return None
        name = value["Ref"]
        pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        parameter = parameters.get(name)
        if not isinstance(parameter, dict) or "Default" not in parameter:
            return None
        value = parameter["Default"]
    return _stringify(value)


def _stringify(value: Any) -> str | None:
    # The way SAM CLI turns template and env.json values into environment strings.
    if isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


# ---------------------------------------------------------------------- its environment


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
            text = _stringify(value)
            if text is None:
                raise InvokeError(f"{path}: {section}.{name} must be a string", _USAGE_ERROR)
            overrides[name] = text
    return overrides


def function_region(overrides: Mapping[str, str], shell: Mapping[str, str]) -> str:
    for source in (overrides, shell):
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            if source.get(name):
                return source[name]
    return DEFAULT_REGION


def function_environment(
    spec: FunctionSpec, overrides: Mapping[str, str], shell: Mapping[str, str]
) -> dict[str, str]:
    """The variables the function runs with, in `sam local invoke`'s order of precedence:
    Lambda's own AWS_* variables, the template's (a declared variable takes the shell's
    value when the shell sets it), then the env file. Unlike SAM CLI, the env file may
    add variables the template does not declare (DATABASE_URL, AWS_ENDPOINT_URL): that is
    how the local stack is reached without putting local URLs in the template."""
    region = function_region(overrides, shell)
    if shell.get("AWS_ACCESS_KEY_ID") and shell.get("AWS_SECRET_ACCESS_KEY"):
        credentials = {
            name: shell[name]
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
            if shell.get(name)
        }
    else:
        credentials = dict(SAM_DEFAULT_CREDENTIALS)
    environment = {
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
    }
    for name in sorted(spec.declared):
        value = shell.get(name, spec.variables.get(name))
        if value is not None:
            environment[name] = value
    environment.update(overrides)
    return environment


# ---------------------------------------------------------------------- sam build


@dataclass(frozen=True)
class BuiltFunction:
    code_dir: Path
    layer_dirs: list[Path]


def sam_build(sam: Path, runtime_python: Path, build_dir: Path) -> None:
    """`sam build --cached` of the whole template into `build_dir`.

    Every function, not only the one invoked: a cached build takes as long either way
    (copying the layer's dependencies dominates), whereas `sam build <id>` wipes the
    other functions' builds, so switching functions would rebuild each time, and SAM
    CLI records its cache (build.toml) only on a full build: without one, each
    `sam build <id> --cached` downloads the layer's dependencies again and leaves
    another copy of them (about 60 MB) in .aws-sam/deps.
    """
    command = [
        str(sam),
        "build",
        "--cached",
        *("--template-file", str(TEMPLATE)),
        *("--build-dir", str(build_dir)),
        *("--cache-dir", str(build_dir.parent / "cache")),
    ]
    environment = {
        **os.environ,
        # lambda-builders looks for `python3.13` on PATH; the runtime venv has the real one
        # (a pyenv shim for an unselected version would not run).
        "PATH": f"{runtime_python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SAM_CLI_TELEMETRY": "0",
    }
    _say("sam build --cached ...")
    started = time.monotonic()
    # The output is shown on a failure only: SAM's banner of next steps does not apply.
    result = subprocess.run(
        command,
        cwd=REPO,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout.decode(errors="replace"))
        raise InvokeError(f"sam build failed with exit code {result.returncode} (output above)")
    _say(f"built in {time.monotonic() - started:.1f} s")


def sources_digest(template: Mapping[str, Any], runtime_python: Path) -> str:
    """A hash of everything `sam build` reads: the template, every function's CodeUri and
    layer's ContentUri tree, and the Python that builds them."""
    roots = set()
    for resource_type, uri in ((SERVERLESS_FUNCTION, "CodeUri"), (SERVERLESS_LAYER, "ContentUri")):
        for resource in resources_of_type(dict(template), resource_type).values():
            location = (resource.get("Properties") or {}).get(uri)
            if isinstance(location, str):
                roots.add(REPO / location)
    digest = hashlib.sha256(f"{runtime_python}\0".encode())
    digest.update(TEMPLATE.read_bytes())
    for root in sorted(roots):
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(f"\0{path.relative_to(REPO)}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def build_is_current(build_dir: Path, digest: str) -> bool:
    """True when the build came from the sources as they are now, and no other build
    (a `sam build` by hand) has replaced it since."""
    try:
        stamp = _stamp_path(build_dir).read_text().split()
        built_template = (build_dir / "template.yaml").read_bytes()
    except OSError:
        return False
    return stamp == [digest, hashlib.sha256(built_template).hexdigest()]


def record_build(build_dir: Path, digest: str) -> None:
    built_template = (build_dir / "template.yaml").read_bytes()
    _stamp_path(build_dir).write_text(f"{digest} {hashlib.sha256(built_template).hexdigest()}\n")


def _stamp_path(build_dir: Path) -> Path:
    return build_dir.parent / "invoke-build.sha256"


def built_function(build_dir: Path, logical_id: str) -> BuiltFunction:
    """Where the built template puts the function's code and its layers' `python/` dirs."""
    built_template = build_dir / "template.yaml"
    if not built_template.is_file():
        raise InvokeError(f"no build in {build_dir}; run without --no-build")
    template = load_template(built_template)
    resources = template.get("Resources") or {}
    function = resources.get(logical_id) or {}
    properties = function.get("Properties") or {}
    code_dir = (build_dir / str(properties.get("CodeUri", ""))).resolve()
    if function.get("Type") != SERVERLESS_FUNCTION or not code_dir.is_dir():
        raise InvokeError(f"{logical_id} is not built in {build_dir}; run without --no-build")
    layer_dirs = []
    for layer in _layer_refs(template, properties):
        name = layer.get("Ref") if isinstance(layer, dict) else None
        resource = resources.get(name) if name else None
        if not resource or resource.get("Type") != SERVERLESS_LAYER:
            # An ARN of a published layer: SAM CLI would download it from AWS.
            _say(f"warning: layer {layer!r} is not built from this template; left out")
            continue
        content = (build_dir / str(resource["Properties"]["ContentUri"])).resolve()
        layer_dirs.append(content / "python")
    return BuiltFunction(code_dir, layer_dirs)


# ---------------------------------------------------------------------- the emulator


def find_rie(sam: Path, architecture: str) -> Path:
    """The aws-lambda-rie binary that SAM CLI's wheel ships (it copies it into containers)."""
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    if machine != architecture:
        raise InvokeError(
            f"the function is built for {architecture} but this machine is {platform.machine()}"
        )
    venv = sam.parent.parent
    candidates = sorted(
        venv.glob(f"lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-{architecture}")
    )
    if not candidates:
        raise InvokeError(f"no aws-lambda-rie-{architecture} in aws-sam-cli under {venv}")
    return candidates[-1]


def _free_port() -> int:
    # The emulator binds it a moment later; Emulator.start() retries if someone else did.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class Emulator:
    """One RIE process serving one function on a free loopback port.

    Its output (START/END/REPORT and everything the function prints) is copied to
    `echo` line by line as it comes and kept in `lines`.
    """

    def __init__(
        self,
        rie: Path,
        runtime_python: Path,
        built: BuiltFunction,
        handler: str,
        environment: Mapping[str, str],
        echo: IO[str],
        bytecode_cache: Path,
    ) -> None:
        self._rie = rie
        self._runtime_python = runtime_python
        self._built = built
        self._handler = handler
        self._environment = dict(environment)
        self._echo = echo
        self._bytecode_cache = bytecode_cache
        self.lines: list[str] = []
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._report_seen = threading.Event()
        self._runtime_pids: set[int] = set()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def command(self, port: int, runtime_api_port: int) -> list[str]:
        return [
            str(self._rie),
            # As SAM CLI runs it: its own INFO lines would drown the function's.
            *("--log-level", "error"),
            *("--runtime-interface-emulator-address", f"{LOOPBACK}:{port}"),
            # The default (127.0.0.1:9001) would collide with a second emulator.
            *("--runtime-api-address", f"{LOOPBACK}:{runtime_api_port}"),
            str(self._runtime_python),
            *("-m", "awslambdaric"),
            self._handler,
        ]

    def process_environment(self) -> dict[str, str]:
        """Nothing of the caller's shell, as in a Lambda sandbox: only what Lambda sets."""
        code = str(self._built.code_dir)
        # Lambda's order: the function (/var/task), then the layers (/opt/python); the
        # runtime venv's site-packages, holding awslambdaric, comes last by itself.
        python_path = os.pathsep.join([code, *(str(d) for d in self._built.layer_dirs)])
        return {
            "PATH": os.pathsep.join(
                [str(self._runtime_python.parent), "/usr/local/bin", "/usr/bin", "/bin"]
            ),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": code,
            "_HANDLER": self._handler,
            "PYTHONPATH": python_path,
            # Compiled once, not on every invoke (imports take seconds), and outside the
            # build dir, which is the deployment package.
            "PYTHONPYCACHEPREFIX": str(self._bytecode_cache),
            **self._environment,
        }

    def start(self) -> None:
        for _ in range(_START_ATTEMPTS):
            self.port, runtime_api_port = _free_port(), _free_port()
            command = self.command(self.port, runtime_api_port)
            self._process = subprocess.Popen(
                command,
                cwd=self._built.code_dir,
                env=self.process_environment(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            self._reader = threading.Thread(target=self._copy_output, daemon=True)
            self._reader.start()
            if self._wait_until_listening():
                address = f"{LOOPBACK}:{self.port}"
                _say(f"emulator pid {self._process.pid} on {address}: {shlex.join(command)}")
                return
            # Most likely another process took a port between _free_port() and the bind.
            self.stop()
        last_words = self.lines[-1] if self.lines else "no output"
        raise InvokeError(
            f"the emulator did not start after {_START_ATTEMPTS} attempts: {last_words}"
        )

    def invoke(self, event: bytes, timeout_s: float) -> bytes:
        assert self.port is not None
        request = urllib.request.Request(
            f"http://{LOOPBACK}:{self.port}{INVOKE_PATH}",
            data=event,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (our loopback URL)
                body: bytes = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise InvokeError(f"the emulator answered HTTP {exc.code}: {detail[:300]}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InvokeError(f"no answer from the emulator: {reason}") from exc
        finally:
            # Noted while the emulator runs; by the time stop() looks, it may have reaped them.
            self._note_runtime_pids()
        # END and REPORT may still be on their way when the answer arrives.
        self._report_seen.wait(_REPORT_TIMEOUT_S)
        return body

    def stop(self) -> None:
        """Terminate, wait, kill: the emulator by its PID, then any runtime it left."""
        process, self._process = self._process, None
        if process is None:
            return
        self._note_runtime_pids(process.pid)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid in self._runtime_pids:
            _kill_if_running(pid)
        if self._reader is not None:
            self._reader.join(timeout=_STOP_TIMEOUT_S)
        runtimes = "".join(f" and runtime pid {pid}" for pid in sorted(self._runtime_pids))
        _say(f"emulator pid {process.pid}{runtimes} stopped")

    def _note_runtime_pids(self, pid: int | None = None) -> None:
        pid = pid or self.pid
        if pid is not None:
            self._runtime_pids |= _children(pid)

    def _wait_until_listening(self) -> bool:
        assert self._process is not None
        assert self.port is not None
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((LOOPBACK, self.port)) == 0:
                    return True
            time.sleep(0.05)
        return False

    def _copy_output(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            self._echo.write(line + "\n")
            self._echo.flush()
            if line.startswith("REPORT RequestId:"):
                self._report_seen.set()


def _children(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children.update(int(child) for child in task.read_text().split())
        except OSError:
            continue
    return children


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (exited, waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may contain spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


def _kill_if_running(pid: int) -> None:
    # The emulator stops its runtime itself; this catches one that outlived it.
    if not is_running(pid):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"awslambdaric" not in cmdline:
        return  # the PID was reused by something that is not ours
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while is_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


# ---------------------------------------------------------------------- the command


def function_error(body: bytes) -> str | None:
    """The one-line error of a failed invocation, None on success. The emulator answers a
    failure with HTTP 200 and Lambda's error shape ({"errorType", "errorMessage", ...}),
    or for a timeout with plain text ("Task timed out after 2.00 seconds"): a function's
    own response is always JSON, since Lambda serialises it."""
    try:
        response = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = body.decode(errors="replace").strip()
        return text.splitlines()[0] if text else "an empty response"
    if isinstance(response, dict) and {"errorType", "errorMessage"} <= response.keys():
        return f"{response['errorType']}: {response['errorMessage']}"
    return None


def _batch_item_failures(body: bytes) -> int:
    try:
        response = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return 0
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    return len(failures) if isinstance(failures, list) else 0


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


def _run(args: argparse.Namespace) -> int:
    shell = dict(os.environ)
    overrides = env_file_overrides(args.env_vars, args.function)
    template = load_template(TEMPLATE)
    spec = function_spec(template, args.function, function_region(overrides, shell))
    event = read_event(args.event)

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
        digest = sources_digest(template, runtime_python)
        if build_is_current(build_dir, digest):
            _say(f"the build in {build_dir} is up to date")
        else:
            sam_build(sam, runtime_python, build_dir)
            record_build(build_dir, digest)
    built = built_function(build_dir, spec.logical_id)

    environment = function_environment(spec, overrides, shell)
    emulator = Emulator(
        rie,
        runtime_python,
        built,
        spec.handler,
        environment,
        echo=sys.stderr,
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
    failures = _batch_item_failures(body)
    if failures:
        # Still a successful invocation, as in Lambda; only these records would be retried.
        _say(f"{spec.logical_id} reported {failures} batch item failure(s); see its logs above")
    if not any(line.startswith("REPORT RequestId:") for line in emulator.lines):
        raise InvokeError("the emulator answered but printed no REPORT line")
    return 0


if __name__ == "__main__":
    sys.exit(main())
