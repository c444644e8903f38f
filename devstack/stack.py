"""The whole bundle on one machine, no Docker and no AWS account: PostgreSQL, SQS with
the template's queues, each function in its own execution environments, an event
source mapping per SQS trigger, the schedule, and the HTTPS endpoint on 127.0.0.1.

Everything is read from template.yaml: queue properties, function environments,
timeouts, batch sizes, concurrency, the schedule's input and the API's routes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from devstack.api_gateway import LocalApiGateway, Route
from devstack.devenv import QUEUE_VARIABLES
from devstack.esm import EventSourceMapping
from devstack.function_specs import FunctionSpec, function_specs, resolve_environment
from devstack.functions import LocalFunction, Observer
from devstack.lambda_context import LOCAL_REGION, LambdaContext
from devstack.pgbouncer import PgBouncer
from devstack.postgres import DATABASE_URL_ENV, EmbeddedPostgres, create_database
from devstack.queue_specs import create_queues, queue_arn, queue_counts, queue_specs_from_template
from devstack.service import Service
from devstack.sqs import LocalSqs
from devstack.template import TEMPLATE_PATH, load_template
from matchstats.db.migrate import migrate

logger = logging.getLogger(__name__)

# AWS scales an SQS trigger without ScalingConfig up to the account's concurrency; two
# local environments show the coalescing without tying up the machine.
_DEFAULT_SQS_CONCURRENCY = 2


@dataclass
class StackOptions:
    schedule_interval_s: float = 60.0
    api_port: int = 0
    cron_secret: str = field(default_factory=lambda: "local-" + secrets.token_urlsafe(18))
    log_dir: Path | None = None
    # Overrides every function's LOG_LEVEL (their logs go to log_dir, not the terminal).
    log_level: str = "INFO"
    # "transaction": the functions reach the database through a real PgBouncer in
    # transaction mode, with DB_POOLER=transaction (PgBouncer must be installed; see
    # devstack/pgbouncer.py). "none": directly, with the template's DB_POOLER.
    db_pooler: Literal["none", "transaction"] = "none"
    # Told of every invocation as it ends (make dev prints a line for each).
    observer: Observer | None = None


class DevStack(Service):
    def __init__(self, options: StackOptions | None = None, template_path: Path = TEMPLATE_PATH):
        self.options = options or StackOptions()
        self._template_path = template_path
        self._template = load_template(template_path)
        self._exit = contextlib.ExitStack()
        self._stop_ticking = threading.Event()
        self.functions: dict[str, LocalFunction] = {}
        self.mappings: dict[str, EventSourceMapping] = {}
        self.queue_urls: dict[str, str] = {}
        self.queue_arns: dict[str, str] = {}
        # The stack's database, direct; the functions' DATABASE_URL, which goes through
        # PgBouncer when options.db_pooler is "transaction".
        self.database_url = ""
        self.functions_database_url = ""
        self.pgbouncer: PgBouncer | None = None
        # The embedded server, when the stack started one (None with DATABASE_URL): the
        # chaos test stops and restarts it.
        self.postgres: EmbeddedPostgres | None = None
        self.api: LocalApiGateway | None = None
        if self.options.log_dir is not None:
            self.log_dir = self.options.log_dir
            self.log_dir.mkdir(parents=True, exist_ok=True)
        else:
            # Nobody asked to keep the logs: a temporary folder, removed on stop.
            self.log_dir = Path(tempfile.mkdtemp(prefix="matchstats-logs-"))
            self._exit.callback(shutil.rmtree, self.log_dir, ignore_errors=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> DevStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        external = os.environ.get(DATABASE_URL_ENV)
        if external:
            # Not ours: used, never started or stopped here.
            server_url = external
        else:
            self.postgres = self._exit.enter_context(EmbeddedPostgres())
            server_url = self.postgres.url
        # A database of its own, so a shared DATABASE_URL server is never written over.
        self.database_url = create_database(server_url, f"matchstats_{uuid.uuid4().hex[:10]}")
        migrate(self.database_url)
        self.functions_database_url = self.database_url
        if self.options.db_pooler == "transaction":
            self.pgbouncer = self._exit.enter_context(PgBouncer(server_url, "transaction"))
            self.functions_database_url = self.pgbouncer.url_for(self.database_url)

        self.sqs_server = self._exit.enter_context(LocalSqs())
        self.sqs = self.sqs_server.client(max_pool_connections=50)
        self.queue_urls = create_queues(self.sqs, queue_specs_from_template(self._template_path))
        self.queue_arns = {name: queue_arn(self.sqs, url) for name, url in self.queue_urls.items()}

        specs = function_specs(self._template_path)
        for spec in specs.values():
            self._start_function(spec)
        # All cold starts at once, before the first message: the pools fill in parallel.
        warming = [threading.Thread(target=f.warm) for f in self.functions.values()]
        for thread in warming:
            thread.start()
        for thread in warming:
            thread.join()
        self._start_api(specs)
        self._start_schedule(specs)

    def _start_function(self, spec: FunctionSpec) -> None:
        sqs_events = spec.events_of_type("SQS")
        concurrency = max(
            [
                int(e["Properties"].get("ScalingConfig", {}).get("MaximumConcurrency", 0))
                or _DEFAULT_SQS_CONCURRENCY
                for e in sqs_events
            ]
            or [1]
        )
        environment = resolve_environment(spec, self._resolve, self._overrides(spec))
        log_path = self.log_dir / f"{spec.logical_id}.log"
        log_path.write_text("")  # each run starts its logs afresh
        function = LocalFunction(
            spec, environment, concurrency, log_path, observer=self.options.observer
        )
        self.functions[spec.logical_id] = function
        self._exit.callback(function.close)
        for event in sqs_events:
            props = event["Properties"]
            queue = _ref_target(props["Queue"])
            mapping = EventSourceMapping(
                self.sqs,
                self.queue_urls[queue],
                self.queue_arns[queue],
                function,
                batch_size=int(props.get("BatchSize", 10)),
                batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                maximum_concurrency=concurrency,
                function_name=spec.logical_id,
                timeout_s=spec.timeout_s,
                report_batch_item_failures="ReportBatchItemFailures"
                in props.get("FunctionResponseTypes", []),
                memory_limit_in_mb=spec.memory_mb,
            )
            self.mappings[spec.logical_id] = mapping.start()
            self._exit.callback(mapping.stop)

    def _start_api(self, specs: dict[str, FunctionSpec]) -> None:
        routes = []
        for spec in specs.values():
            for event in spec.events_of_type("Api", "HttpApi"):
                routes.append(
                    Route(
                        event["Properties"].get("Method", "ANY"),
                        event["Properties"]["Path"],
                        functools.partial(self._invoke_for_api, spec),
                    )
                )
        if routes:
            self.api = LocalApiGateway(routes, self.options.api_port).start()
            self._exit.callback(self.api.stop)

    def _invoke_for_api(self, spec: FunctionSpec, event: dict[str, Any]) -> Any:
        context = LambdaContext.for_invocation(spec.logical_id, spec.timeout_s)
        return self.functions[spec.logical_id].invoke(event, context)

    def _start_schedule(self, specs: dict[str, FunctionSpec]) -> None:
        for spec in specs.values():
            for event in spec.events_of_type("ScheduleV2", "Schedule"):
                thread = threading.Thread(
                    target=self._tick, args=(spec, event), name=f"schedule-{spec.logical_id}"
                )
                thread.daemon = True
                thread.start()
                self._exit.callback(thread.join, 5)
        self._exit.callback(self._stop_ticking.set)

    def _tick(self, spec: FunctionSpec, event: dict[str, Any]) -> None:
        while not self._stop_ticking.wait(self.options.schedule_interval_s):
            try:
                self.functions[spec.logical_id].invoke(schedule_payload(event))
            except Exception:
                logger.exception("scheduled invocation of %s failed", spec.logical_id)

    def stop(self) -> None:
        self._exit.close()

    # ------------------------------------------------------------------ environment

    def _resolve(self, value: Any) -> str | None:
        """A template reference as it resolves here; None for what exists only in AWS."""
        if isinstance(value, dict) and "Ref" in value:
            target = value["Ref"]
            if target in self.queue_urls:
                return self.queue_urls[target]
            if target == "AWS::Region":
                return LOCAL_REGION
            default = self._template.get("Parameters", {}).get(target, {}).get("Default")
            return None if default is None else str(default)
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            target, attribute = value["Fn::GetAtt"]
            if target in self.queue_arns and attribute == "Arn":
                return self.queue_arns[target]
        return None

    def _overrides(self, spec: FunctionSpec) -> dict[str, str]:
        overrides = {
            **self.sqs_server.environment(),
            "DATABASE_URL": self.functions_database_url,
            "LOG_LEVEL": self.options.log_level,
            "AWS_SAM_LOCAL": "true",
        }
        if self.options.db_pooler != "none":
            overrides["DB_POOLER"] = self.options.db_pooler
        if "CRON_SECRET" in spec.environment or "CRON_SECRET_ARN" in spec.environment:
            overrides["CRON_SECRET"] = self.options.cron_secret
        return overrides

    def environment(self) -> dict[str, str]:
        """What a tool needs to reach this stack: the database, the SQS endpoint with its
        dummy credentials, the four queue URLs (named as the `matchstats` command reads
        them) and the API's cron secret."""
        return {
            "DATABASE_URL": self.database_url,
            **self.sqs_server.environment(),
            **{
                variable: self.queue_urls[logical_id]
                for logical_id, variable in QUEUE_VARIABLES.items()
                if logical_id in self.queue_urls
            },
            "CRON_SECRET": self.options.cron_secret,
        }

    # ------------------------------------------------------------------ observing

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            name: vars(queue_counts(self.sqs, url)) for name, url in sorted(self.queue_urls.items())
        }

    def wait_until_idle(self, timeout_s: float, stable_s: float = 1.0) -> None:
        """Until no queue but the dead-letter queues holds a message (visible, in flight
        or delayed) for `stable_s`; TimeoutError naming what is left otherwise."""
        deadline = time.monotonic() + timeout_s
        quiet_since: float | None = None
        last_busy: dict[str, dict[str, int]] = {}
        while True:
            busy = {
                name: counts
                for name, counts in self.counts().items()
                if "DeadLetter" not in name and any(counts.values())
            }
            now = time.monotonic()
            if busy:
                quiet_since, last_busy = None, busy
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= stable_s:
                return
            if now > deadline:
                raise TimeoutError(f"queues not drained after {timeout_s:.0f} s: {last_busy}")
            time.sleep(0.1)


def schedule_payload(event: dict[str, Any]) -> dict[str, Any]:
    """What EventBridge Scheduler delivers: the schedule's Input with its context
    attributes filled in, or the classic Scheduled Event when there is no Input."""
    raw = event["Properties"].get("Input")
    if raw:
        filled = raw.replace(
            "<aws.scheduler.scheduled-time>", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ).replace("<aws.scheduler.execution-id>", str(uuid.uuid4()))
        return dict(json.loads(filled))
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": LOCAL_REGION,
        "resources": [],
        "detail": {},
    }


def _ref_target(value: Any) -> str:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    raise ValueError(f"cannot tell which queue {value!r} names")
