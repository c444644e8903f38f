"""`matchstats`: the operator's console command for the matchstats pipeline.

Parses the command line (its arguments and help are ops/arguments.py's), finds the
stack, runs the command; errors become one line on stderr and an exit status, never a
traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager

from matchstats.errors import MatchstatsError
from matchstats.observability import logger as layer_logger
from ops import commands
from ops.arguments import build_parser
from ops.aws import Aws
from ops.commands import EXIT_INTERRUPTED, EXIT_USAGE
from ops.context import Context
from ops.redrive import RedriveInterruptedError
from ops.settings import QUEUE_SOURCES

DEBUG_ENV = "MATCHSTATS_DEBUG"
# Variables by which an environment says where the pipeline is; with any of them set the
# command never reaches for the local stack's file.
CONFIGURING_VARIABLES = (
    "DATABASE_URL",
    "DB_SECRET_ARN",
    "AWS_ENDPOINT_URL",
    *(source.env for source in QUEUE_SOURCES.values()),
)


def local_stack(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The running `make dev` stack's variables (its .devstack/dev.env), when the
    environment configures nothing itself; None otherwise or without a live stack."""
    if any(environ.get(name) for name in CONFIGURING_VARIABLES):
        return None
    from devstack import devenv  # local tooling, only needed here

    found = devenv.running(devenv.env_file(environ))
    return dict(found.variables) if found is not None else None


@contextmanager
def layer_logs(*, debug: bool) -> Iterator[None]:
    """The layer logs JSON lines to stdout for CloudWatch; a command prints plain text on
    stdout and tells what went wrong itself, so while it runs those lines are dropped, or
    with MATCHSTATS_DEBUG set written to stderr."""
    with ExitStack() as restore:
        handler = layer_logger.registered_handler
        if isinstance(handler, logging.StreamHandler):
            restore.callback(handler.setStream, handler.stream)
            handler.setStream(sys.stderr)
        underlying = logging.getLogger(layer_logger.name)  # the logging.Logger it writes with
        restore.callback(underlying.setLevel, underlying.level)
        if not debug:
            underlying.setLevel(logging.CRITICAL + 1)
        yield


def main(
    argv: Sequence[str] | None = None,
    *,
    aws: Aws | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """The console script. `aws` and `environ` let a test hand in clients and settings."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    env = os.environ if environ is None else environ
    context: Context | None = None
    try:
        local = None if getattr(args, "stack", None) else local_stack(env)
        if local is not None:
            env = {**env, **local}
        if aws is None:
            aws = Aws(
                profile=getattr(args, "profile", None),
                region=getattr(args, "region", None),
                local=local,
            )
        context = Context(args, aws, env)
        with layer_logs(debug=bool(env.get(DEBUG_ENV))):
            code: int = args.run(context)
        return code
    except RedriveInterruptedError as exc:
        return commands.error(f"interrupted: {exc}", EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        return commands.error("interrupted", EXIT_INTERRUPTED)
    except MatchstatsError as exc:
        return commands.error(str(exc))
    except Exception as exc:
        if env.get(DEBUG_ENV):
            traceback.print_exc()
        return commands.error(
            f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)"
        )
    finally:
        if context is not None:
            context.close()


if __name__ == "__main__":
    sys.exit(main())
