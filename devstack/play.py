"""`python -m devstack.play score MATCH HOME AWAY [--no-message]`: plays the application
against the running `make dev` stack. It enters a match's final score as the app does
(status completed, score_version + 1) and, unless --no-message, sends the points message
the app's scoring Lambda sends after its commit. With --no-message it only repairs the
data, for a dead-lettered message of that match to be redriven.

It finds the database and PointsQueue in the stack's .devstack/dev.env (or in the
variables DATABASE_URL and POINTS_QUEUE_URL). Local tooling; never shipped to Lambda.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import psycopg

from devstack import devenv
from matchstats.producer import enqueue_points_calculation
from testkit.seed import correct_score


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.play", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="enter a match's final score")
    score.add_argument("match", type=int)
    score.add_argument("home", type=int)
    score.add_argument("away", type=int)
    score.add_argument(
        "--no-message", action="store_true", help="repair the data only; send no message"
    )
    args = parser.parse_args(argv)

    running = devenv.running()
    # The running stack's database, endpoint and dummy credentials, whatever this shell
    # holds; without one, this shell's.
    environment = {**os.environ, **(running.variables if running else {})}
    database_url = environment.get("DATABASE_URL")
    if not database_url:
        print("play: no local stack: start `make dev` in another terminal", file=sys.stderr)
        return 1
    with psycopg.connect(database_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM matches WHERE id = %s", (args.match,)).fetchone()
        if exists is None:
            print(f"play: match {args.match} does not exist", file=sys.stderr)
            return 1
        version = correct_score(conn, args.match, args.home, args.away)
    print(f"match {args.match}: {args.home}-{args.away}, completed (score_version {version})")
    if args.no_message:
        return 0
    os.environ.update(environment)
    message_id = enqueue_points_calculation(args.match, score_version=version)
    print(f"points message {message_id} sent to PointsQueue")
    return 0


if __name__ == "__main__":
    sys.exit(main())
