"""The AWS Lambda Runtime Interface Emulator (RIE) that ships inside aws-sam-cli's wheel,
serving one built function with `awslambdaric` on the runtime's Python, as `sam local
invoke` serves it in a container. Local tooling; never shipped to Lambda.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from devstack.sam_build import BuiltFunction

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
LOOPBACK = "127.0.0.1"

_READY_TIMEOUT_S = 10.0
_START_ATTEMPTS = 3
# The emulator prints END and REPORT around the time it answers; wait this long for them.
_REPORT_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 5.0


class EmulatorError(Exception):
    """The emulator could not be found, did not start or did not answer."""


def find_rie(sam: Path, architecture: str) -> Path:
    """The aws-lambda-rie binary that SAM CLI's wheel ships (it copies it into containers)."""
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    if machine != architecture:
        raise EmulatorError(
            f"the function is built for {architecture} but this machine is {platform.machine()}"
        )
    venv = sam.parent.parent
    candidates = sorted(
        venv.glob(f"lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-{architecture}")
    )
    if not candidates:
        raise EmulatorError(f"no aws-lambda-rie-{architecture} in aws-sam-cli under {venv}")
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
    `echo` line by line as it comes and kept in `lines`; `say` tells of its starts and
    stops.
    """

    def __init__(
        self,
        rie: Path,
        runtime_python: Path,
        built: BuiltFunction,
        handler: str,
        environment: Mapping[str, str],
        echo: IO[str],
        say: Callable[[str], None],
        bytecode_cache: Path,
    ) -> None:
        self._rie = rie
        self._runtime_python = runtime_python
        self._built = built
        self._handler = handler
        self._environment = dict(environment)
        self._echo = echo
        self._say = say
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
                self._say(f"emulator pid {self._process.pid} on {address}: {shlex.join(command)}")
                return
            # Most likely another process took a port between _free_port() and the bind.
            self.stop()
        last_words = self.lines[-1] if self.lines else "no output"
        raise EmulatorError(
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
            raise EmulatorError(f"the emulator answered HTTP {exc.code}: {detail[:300]}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EmulatorError(f"no answer from the emulator: {reason}") from exc
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
        self._say(f"emulator pid {process.pid}{runtimes} stopped")

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


def batch_item_failure_count(body: bytes) -> int:
    """How many records a partial batch response asks SQS to retry; 0 for any other."""
    try:
        response = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return 0
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    return len(failures) if isinstance(failures, list) else 0
