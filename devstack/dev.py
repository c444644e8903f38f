"""`make dev`: the local stack kept running, with what you need to call it."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

from devstack.demo import LOG_DIR
from devstack.stack import DevStack, StackOptions


def main() -> int:
    try:
        return _serve()
    except KeyboardInterrupt:
        # Ctrl-C while the stack was still starting: it has stopped what it started.
        print("interrupted", file=sys.stderr)
        return 130


def _serve() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with DevStack(StackOptions(schedule_interval_s=60, log_dir=LOG_DIR)) as stack:
        assert stack.api is not None
        urls = stack.queue_urls
        print(
            f"""matchstats local stack is running (Ctrl-C stops it and everything it started).

  database        {stack.database_url}
  SQS endpoint    {stack.sqs_server.endpoint_url}
  PointsQueue     {urls["PointsQueue"]}
  RefreshQueue    {urls["RefreshQueue"]}
  function logs   {stack.log_dir}
  schedule        ScheduledRefreshFunction every 60 s

Ask for a refresh through the API:
  curl -i -X POST {stack.api.url}/cron/update-stats \\
       -H 'Authorization: Bearer {stack.options.cron_secret}' \\
       -H 'Content-Type: application/json' -d '{{"scope": "all"}}'

Send a points message as the scoring Lambda does (in another shell):
  AWS_ENDPOINT_URL={stack.sqs_server.endpoint_url} AWS_DEFAULT_REGION=us-east-1 \\
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \\
  POINTS_QUEUE_URL={urls["PointsQueue"]} \\
  .venv/bin/python -c 'from matchstats.producer import enqueue_points_calculation as e; print(e(1))'

Look at the standings:
  psql {stack.database_url} -c 'SELECT * FROM competition_table LIMIT 20'
""",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        print("stopping ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
