"""Server processes that the local tooling starts (PostgreSQL, PgBouncer): run as an
unprivileged user when we are root, and ended by the kernel when their parent dies."""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

# postgres and pgbouncer refuse to run as root; CI runs as root, so they run as this user.
UNPRIVILEGED_USER = "nobody"

_PR_SET_PDEATHSIG = 1


def unprivileged_user() -> pwd.struct_passwd | None:
    """The user to run servers as: `nobody` when we are root, else None (ourselves)."""
    return pwd.getpwnam(UNPRIVILEGED_USER) if os.geteuid() == 0 else None


def set_parent_death_signal(signum: signal.Signals) -> bool:
    """prctl(PR_SET_PDEATHSIG): this process gets `signum` when its parent dies, so a run
    killed outright (kill -9, no atexit) leaves nothing of ours behind. Strictly, when the
    parent's *thread* that forked us ends: start long-lived children from a thread that
    lives as long as the process. Linux only (prctl(2)); elsewhere it does nothing and
    returns False, and the PID-based clean stop is the only net."""
    if sys.platform != "linux":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(_PR_SET_PDEATHSIG, signum) == 0)


def stop_with_parent(signum: signal.Signals) -> Callable[[], None]:
    """A preexec_fn arming set_parent_death_signal(signum) in the child. It runs after the
    switch to the unprivileged user, which would otherwise clear the setting."""

    def arm() -> None:
        set_parent_death_signal(signum)

    return arm


def die_with_parent(signum: signal.Signals) -> None:
    """Arms set_parent_death_signal(signum) for this process, and sends `signum` to itself
    at once if the parent died while it was being armed (we were handed to init or a
    subreaper in between)."""
    parent_pid = os.getppid()
    if set_parent_death_signal(signum) and os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)


def spawn(
    command: list[str],
    *,
    cwd: Path,
    stdout: IO[bytes] | int,
    run_as: pwd.struct_passwd | None,
    parent_death_signal: signal.Signals,
) -> subprocess.Popen[bytes]:
    """Start `command` as `run_as` (None: ourselves), stderr into stdout, no stdin."""
    return subprocess.Popen(
        command,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        # cwd must be readable by the unprivileged user, and C messages keep log
        # matching (port in use) independent of the caller's locale.
        cwd=cwd,
        env={**os.environ, "LC_ALL": "C"},
        user=run_as.pw_uid if run_as else None,
        group=run_as.pw_gid if run_as else None,
        # Without this the child keeps root's supplementary groups.
        extra_groups=[] if run_as else None,
        preexec_fn=stop_with_parent(parent_death_signal),
    )


def terminate(process: subprocess.Popen[bytes], signum: signal.Signals, timeout_s: float) -> None:
    """Ask `process` to end with `signum` and wait; kill it if it is still there after
    `timeout_s`. Nothing if it has already exited."""
    if process.poll() is not None:
        return
    process.send_signal(signum)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning("pid %s ignored %s; killing it", process.pid, signum.name)
        process.kill()
        process.wait()


def free_port() -> int:
    """A loopback port free now; another process can take it before the server binds it,
    which LocalServer.start_on_a_free_port retries."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_tail(path: Path, lines: int) -> str:
    """The last `lines` lines of the log at `path`; "" when it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def make_traversable_by_others(directory: Path) -> None:
    """chmod o+x `directory` and its ancestors where missing, so another user can reach it."""
    fixed = []
    for path in (directory, *directory.parents):
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            fixed.append(str(path))
    if fixed:
        logger.info("made %s traversable (o+x) for user %s", ", ".join(fixed), UNPRIVILEGED_USER)


def make_readable_by_others(tree: Path) -> None:
    """chmod o+r (o+rx for dirs and executables) under `tree` where missing."""
    fixed = 0
    for root, dirs, files in os.walk(tree):
        for name in [".", *dirs, *files]:
            path = Path(root, name)
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            wanted = stat.S_IROTH
            if stat.S_ISDIR(mode) or mode & stat.S_IXUSR:
                wanted |= stat.S_IXOTH
            if mode & wanted != wanted:
                path.chmod(stat.S_IMODE(mode) | wanted)
                fixed += 1
    if fixed:
        logger.info("made %d paths under %s readable for user %s", fixed, tree, UNPRIVILEGED_USER)
