"""The settings of the running `make dev` stack, as one `export ...` block.

`make dev` prints the block and writes it to .devstack/dev.env; `make invoke` and the
`matchstats` command read that file by themselves, so nobody copies a port or a secret
by hand. The file names the process that wrote it: a reader trusts it only while that
process runs and its SQS endpoint answers, so a file left behind by a stack that was
killed never points a tool at dead ports. `make dev` removes it when it stops.

Local tooling only; nothing here ships to Lambda.
"""

from __future__ import annotations

import os
import shlex
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from devstack.template import TEMPLATE_PATH
from ops.settings import QUEUE_SOURCES

DEFAULT_ENV_FILE = TEMPLATE_PATH.parent / ".devstack" / "dev.env"
# Another place for the file (the tests use one of their own).
ENV_FILE_VARIABLE = "MATCHSTATS_DEV_ENV_FILE"
PID_VARIABLE = "MATCHSTATS_DEV_PID"
# How the block names each queue, by the template's logical id.
QUEUE_VARIABLES = {queue.value: source.env for queue, source in QUEUE_SOURCES.items()}
# How a process reaches the stack's database and SQS (the queues aside).
CONNECTION_VARIABLES = (
    "DATABASE_URL",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
_CONNECT_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class DevEnvironment:
    """The variables of the block (the pid of `make dev` among them)."""

    variables: dict[str, str]

    @property
    def pid(self) -> int | None:
        value = self.variables.get(PID_VARIABLE, "")
        return int(value) if value.isdigit() else None

    def queue_url(self, logical_id: str) -> str | None:
        name = QUEUE_VARIABLES.get(logical_id)
        return self.variables.get(name) if name else None

    def export_block(self) -> str:
        """`export NAME=value` lines, values quoted for a POSIX shell."""
        return "\n".join(
            f"export {name}={shlex.quote(value)}" for name, value in self.variables.items()
        )


def env_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where the block lives: $MATCHSTATS_DEV_ENV_FILE, else .devstack/dev.env."""
    source = os.environ if environ is None else environ
    return Path(source.get(ENV_FILE_VARIABLE) or DEFAULT_ENV_FILE)


def write(environment: DevEnvironment, path: Path | None = None) -> Path:
    """Writes the block, readable by its owner only (it holds the local cron secret);
    returns where."""
    path = path or env_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(
            "# Written by `make dev` for `make invoke` and `matchstats`, which read it while\n"
            f"# process {environment.pid} runs. Source it in a shell: . {path}\n"
        )
        out.write(environment.export_block() + "\n")
    partial.replace(path)
    return path


def remove(pid: int, path: Path | None = None) -> None:
    """Removes the file if the process `pid` wrote it (a newer stack's stays)."""
    path = path or env_file()
    found = parse(path)
    if found is not None and found.pid == pid:
        path.unlink(missing_ok=True)


def parse(path: Path | None = None) -> DevEnvironment | None:
    """The block in `path` as written, alive or not; None without a file."""
    path = path or env_file()
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    variables: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            variables[name] = value
    return DevEnvironment(variables)


def running(path: Path | None = None) -> DevEnvironment | None:
    """The block of the `make dev` that is running now, or None: no file, or its process
    is gone, or its SQS endpoint does not answer (a stale file)."""
    found = parse(path)
    if found is None or found.pid is None or not _process_alive(found.pid):
        return None
    endpoint = found.variables.get("AWS_ENDPOINT_URL")
    if not endpoint or not _accepts_connections(endpoint):
        return None
    return found


def from_environment(environ: Mapping[str, str]) -> DevEnvironment | None:
    """The block as a shell that sourced it holds it (its pid variable marks it)."""
    if PID_VARIABLE not in environ:
        return None
    names = [PID_VARIABLE, *CONNECTION_VARIABLES, "CRON_SECRET", *QUEUE_VARIABLES.values()]
    return DevEnvironment({name: environ[name] for name in names if name in environ})


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process; it exists
    return True


def _accepts_connections(url: str) -> bool:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port), _CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False
