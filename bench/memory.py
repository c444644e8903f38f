"""P6: peak RSS of one invocation of each function on a full batch, each in a fresh
interpreter set up as its execution environment (bench.environments), on the real
PostgreSQL and the local SQS, through the handler's own production dependencies. The
baseline is a fresh interpreter that only runs the function's third-party imports."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from bench.cold_start import third_party_imports
from bench.database import (
    bulk_points,
    complete_matches,
    connect,
    fresh_database,
    insert_fixtures,
    vacuum_analyze,
)
from bench.environments import lambda_environment, run_child
from bench.measure import Progress, ratio
from devstack.function_specs import function_specs
from devstack.queue_specs import create_queues, queue_specs_from_template
from devstack.sqs import LocalSqs
from devstack.template import TEMPLATE_PATH
from matchstats.messages import RefreshMessage, RefreshReason
from testkit.events import load_event, points_bodies, sqs_event

BATCH = 10  # the SQS functions' BatchSize
SEASON_MATCHES = 760


def _events(conn: Any) -> dict[str, dict[str, Any]]:
    """A full batch for each SQS function, the sample event for the others."""
    first_new = SEASON_MATCHES + 1
    new_matches = list(range(first_new, first_new + BATCH))
    complete_matches(conn, new_matches)
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    refresh_body = RefreshMessage(reason=RefreshReason.POINTS, requested_at=row[0]).to_body()
    return {
        "CalculatePointsFunction": sqs_event(points_bodies(*new_matches)),
        "RefreshViewsFunction": sqs_event([refresh_body] * BATCH, template="refresh-views.json"),
        "ScheduledRefreshFunction": load_event("scheduled-refresh.json"),
        "RefreshApiFunction": load_event("refresh-api.json"),
    }


def _cron_secret(api_event: dict[str, Any]) -> str:
    """The secret the sample API event presents, so that the call is accepted."""
    return str(api_event["headers"]["Authorization"]).removeprefix("Bearer ").strip()


def _succeeded(logical_id: str, response: Any) -> bool:
    if logical_id == "RefreshApiFunction":
        return bool(response.get("statusCode") == 202)
    if logical_id == "ScheduledRefreshFunction":
        return bool(response.get("status") == "enqueued")
    return bool(response == {"batchItemFailures": []})


def measure(server_url: str, progress: Progress) -> dict[str, Any]:
    functions: dict[str, Any] = {}
    with (
        fresh_database(server_url, "memory") as url,
        connect(url) as conn,
        LocalSqs() as sqs,
        tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp,
    ):
        insert_fixtures(conn, 1, SEASON_MATCHES, completed=True)
        bulk_points(conn, 1, SEASON_MATCHES)
        insert_fixtures(conn, SEASON_MATCHES + 1, BATCH, completed=False)
        vacuum_analyze(conn)
        queue_urls = create_queues(sqs.client(), queue_specs_from_template(TEMPLATE_PATH))
        events = _events(conn)
        overrides = {
            **sqs.environment(),
            "DATABASE_URL": url,
            "CRON_SECRET": _cron_secret(events["RefreshApiFunction"]),
        }
        for logical_id, spec in sorted(function_specs().items()):
            progress(f"P6 {logical_id}: one invocation in a fresh interpreter")
            module = spec.handler.rpartition(".")[0]
            env = lambda_environment(spec, Path(tmp) / "pycache", queue_urls, overrides)
            # The first import compiles the bytecode (as a built layer ships it) and names the
            # modules whose third-party imports make the baseline: those imports alone.
            first = run_child("import", [module], env)
            baseline = Path(tmp) / f"{logical_id}-baseline.py"
            statements = third_party_imports(first["first_party_files"], {module, "matchstats"})
            baseline.write_text("\n".join(statements) + "\n")
            dependencies = run_child("statements", [str(baseline)], env)
            event_file = Path(tmp) / f"{logical_id}.json"
            event_file.write_text(json.dumps(events[logical_id]))
            result = run_child(
                "invoke", [module, str(event_file), logical_id, str(spec.timeout_s)], env
            )
            records = len(events[logical_id].get("Records", [])) or 1
            functions[logical_id] = {
                "records": records,
                "succeeded": _succeeded(logical_id, result["response"]),
                "peak_rss_mb": result["rss_peak_kb"] / 1024,
                "after_import_mb": result["rss_after_import_kb"] / 1024,
                "interpreter_mb": result["rss_start_kb"] / 1024,
                "invocation_mb": (result["rss_peak_kb"] - result["rss_after_import_kb"]) / 1024,
                "dependencies_only_mb": dependencies["rss_peak_kb"] / 1024,
                "ratio": ratio(result["rss_peak_kb"], dependencies["rss_peak_kb"]),
                "memory_size_mb": spec.memory_mb,
                "share_of_memory_size": result["rss_peak_kb"] / 1024 / spec.memory_mb,
                "invocation_s": result["invocation_s"],
                "imports_psycopg": bool(result["psycopg_after_invocation"]),
            }
    return {"functions": functions}
