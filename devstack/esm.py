"""A local stand-in for Lambda's SQS event source mapping.

It polls a queue the way the Lambda service does for an SQS trigger and invokes a
handler in-process with the exact event Lambda would send, so the functions, the
tests and the demo exercise the same failure semantics as in AWS: partial batch
responses, whole-batch failures, visibility timeouts and redrive to the
dead-letter queue (which the queue itself performs, as in SQS).

Each worker thread plays one Lambda execution environment: its invocations run one
after another, and at most ``maximum_concurrency`` run at once.

The shapes of what passes between the queue and the handler (the event's records, the
partial batch response) are devstack/lambda_sqs.py's.

One responsibility, kept whole past 350 lines: the event source mapping's loop (collect
a batch, invoke, settle each message) and the limits the Lambda API puts on it.

Local tooling only; nothing here ships to Lambda.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from devstack.lambda_context import LOCAL_REGION, LambdaContext
from devstack.lambda_sqs import batch_item_failures, lambda_sqs_record
from devstack.queue_specs import QueueCounts, queue_counts
from devstack.queue_specs import queue_arn as lookup_queue_arn
from devstack.service import Service
from matchstats.queues import pack_requests

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

logger = logging.getLogger(__name__)

# The context is typed Any because real handlers annotate Powertools' LambdaContext
# class, which the local LambdaContext matches by shape rather than by inheritance.
Handler = Callable[[dict[str, Any], Any], Any]

# SQS hands out at most 10 messages per ReceiveMessage call.
_SQS_MAX_MESSAGES_PER_RECEIVE = 10
# After a failed poll (server gone, queue deleted) a worker waits this long before polling
# again, so a broken endpoint does not turn into a busy loop.
_POLL_ERROR_BACKOFF_S = 1.0
_DRAIN_POLL_INTERVAL_S = 0.1


@dataclass(frozen=True)
class EsmStats:
    """What the mapping has done so far; a snapshot, safe to keep."""

    batches: int = 0
    records_received: int = 0
    records_succeeded: int = 0
    records_failed: int = 0
    records_deleted: int = 0
    handler_errors: int = 0


class _Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(EsmStats.__dataclass_fields__, 0)

    def add(self, **increments: int) -> None:
        with self._lock:
            for name, increment in increments.items():
                self._values[name] += increment

    def snapshot(self) -> EsmStats:
        with self._lock:
            return EsmStats(**self._values)


class EventSourceMapping(Service):
    """Polls one queue and invokes ``handler(event, context)`` like Lambda's SQS trigger.

    Defaults follow the AWS ones (batch 10, no batching window, timeout 3 s), and
    ``report_batch_item_failures`` mirrors ``FunctionResponseTypes:
    [ReportBatchItemFailures]``. ``maximum_concurrency`` may be 1 here (AWS requires
    at least 2) so a test can force invocations into one sequence.
    """

    def __init__(
        self,
        sqs_client: SQSClient,
        queue_url: str,
        queue_arn: str | None,
        handler: Handler,
        *,
        batch_size: int = 10,
        batching_window_s: float = 0.0,
        maximum_concurrency: int = 5,
        function_name: str = "local-function",
        timeout_s: float = 3.0,
        region: str = LOCAL_REGION,
        report_batch_item_failures: bool = True,
        memory_limit_in_mb: int = 128,
        poll_wait_s: int = 1,
    ) -> None:
        _validate(batch_size, batching_window_s, maximum_concurrency, timeout_s, poll_wait_s)
        self._sqs = sqs_client
        self.queue_url = queue_url
        self._queue_arn = queue_arn
        self._handler = handler
        self.batch_size = batch_size
        self.batching_window_s = batching_window_s
        self.maximum_concurrency = maximum_concurrency
        self.function_name = function_name
        self.timeout_s = timeout_s
        self.region = region
        self.report_batch_item_failures = report_batch_item_failures
        self.memory_limit_in_mb = memory_limit_in_mb
        # Long polls are kept short so that stop() is never more than this far away.
        self.poll_wait_s = poll_wait_s

        self._counters = _Counters()
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self._in_flight_lock = threading.Lock()
        self._in_flight = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EventSourceMapping:
        if self._workers:
            return self
        self._check_visibility_timeout()
        if self._queue_arn is None:
            self._queue_arn = lookup_queue_arn(self._sqs, self.queue_url)
        self._stopping.clear()
        self._workers = [
            threading.Thread(
                target=self._run_worker,
                name=f"esm-{self.function_name}-{number}",
                daemon=True,  # a hung handler must not keep the interpreter alive
            )
            for number in range(self.maximum_concurrency)
        ]
        for worker in self._workers:
            worker.start()
        logger.info(
            "event source mapping %s -> %s started with %d workers",
            self._queue_arn,
            self.function_name,
            self.maximum_concurrency,
        )
        return self

    def stop(self) -> None:
        """Stop polling, let in-flight batches finish (invoke and delete), join the workers."""
        self._stopping.set()
        # A worker may be in a long poll, a batching window, then a full invocation.
        join_timeout = self.poll_wait_s + self.batching_window_s + self.timeout_s + 5.0
        for worker in self._workers:
            worker.join(join_timeout)
            if worker.is_alive():
                logger.warning("%s still busy after %.0f s; abandoned", worker.name, join_timeout)
        self._workers = []
        logger.info("event source mapping for %s stopped: %s", self.function_name, self.stats)

    @property
    def queue_arn(self) -> str | None:
        return self._queue_arn

    @property
    def stats(self) -> EsmStats:
        return self._counters.snapshot()

    def drain(self, timeout_s: float, stable_s: float = 0.5) -> None:
        """Wait until the queue is empty and no batch is in the handler.

        "Empty" means no visible, in-flight or delayed message, held for ``stable_s``
        so a message between a receive and its invocation is not mistaken for done.
        Failed messages count until they succeed or the queue dead-letters them.
        """
        deadline = time.monotonic() + timeout_s
        empty_since: float | None = None
        while True:
            counts = queue_counts(self._sqs, self.queue_url)
            in_flight = self._in_flight_count()
            now = time.monotonic()
            if counts.total == 0 and in_flight == 0:
                empty_since = empty_since if empty_since is not None else now
                if now - empty_since >= stable_s:
                    return
            else:
                empty_since = None
            if now >= deadline:
                raise TimeoutError(self._not_drained_message(timeout_s, counts, in_flight))
            time.sleep(_DRAIN_POLL_INTERVAL_S)

    def _not_drained_message(self, timeout_s: float, counts: QueueCounts, in_flight: int) -> str:
        return (
            f"{self.queue_url} not drained after {timeout_s:g} s: "
            f"{counts.visible} visible, {counts.not_visible} not visible, "
            f"{counts.delayed} delayed, {in_flight} batches in the handler"
        )

    # ------------------------------------------------------------------ polling

    def _run_worker(self) -> None:
        while not self._stopping.is_set():
            try:
                messages = self._collect_batch()
            except (BotoCoreError, ClientError) as exc:
                logger.warning("polling %s failed: %s", self.queue_url, exc)
                self._stopping.wait(_POLL_ERROR_BACKOFF_S)
                continue
            if messages:
                # What was received is processed even when stopping: released unprocessed,
                # the messages would have spent a receive and could reach the DLQ untried.
                self._process(messages)

    def _collect_batch(self) -> list[MessageTypeDef]:
        """One long poll, then, within the batching window, more until the batch is full."""
        messages = self._receive(self.batch_size, self.poll_wait_s)
        if not messages or self.batching_window_s <= 0:
            return messages
        window_ends = time.monotonic() + self.batching_window_s
        while len(messages) < self.batch_size and not self._stopping.is_set():
            remaining = window_ends - time.monotonic()
            if remaining <= 0:
                break
            # WaitTimeSeconds is whole seconds; under one second left, a short poll
            # plus a brief pause keeps to the window without hammering the queue.
            wait = min(int(remaining), self.poll_wait_s)
            more = self._receive(self.batch_size - len(messages), wait)
            messages.extend(more)
            if not more and wait == 0:
                self._stopping.wait(min(remaining, 0.05))
        return messages

    def _receive(self, wanted: int, wait_s: int) -> list[MessageTypeDef]:
        # No VisibilityTimeout here: like Lambda, rely on the queue's own setting.
        response = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(wanted, _SQS_MAX_MESSAGES_PER_RECEIVE),
            WaitTimeSeconds=wait_s,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    # ------------------------------------------------------------------ invoking

    def _process(self, messages: list[MessageTypeDef]) -> None:
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            self._invoke_and_settle(messages)
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def _invoke_and_settle(self, messages: list[MessageTypeDef]) -> None:
        assert self._queue_arn is not None  # set by start()
        event = {"Records": [lambda_sqs_record(m, self._queue_arn, self.region) for m in messages]}
        message_ids = [m["MessageId"] for m in messages]
        self._counters.add(batches=1, records_received=len(messages))

        failed = self._invoke(event, message_ids)
        succeeded = [m for m in messages if m["MessageId"] not in failed]
        deleted = self._delete(succeeded)
        failed_count = len(messages) - len(succeeded)
        self._counters.add(
            records_succeeded=len(succeeded),
            records_failed=failed_count,
            records_deleted=deleted,
        )
        if failed_count:
            logger.info(
                "%s: %d of %d records failed and stay on the queue",
                self.function_name,
                failed_count,
                len(messages),
            )

    def _invoke(self, event: dict[str, Any], message_ids: list[str]) -> Collection[str]:
        """Invoke the handler; return the ids of the records Lambda would not delete."""
        assert self._queue_arn is not None  # set by start()
        context = LambdaContext.for_invocation(
            self.function_name,
            self.timeout_s,
            memory_limit_in_mb=self.memory_limit_in_mb,
            region=self.region,
            # The function lives in the queue's account, as a same-account trigger does.
            account_id=self._queue_arn.split(":")[4],
        )
        started = time.monotonic()
        try:
            response = self._handler(event, context)
            # Lambda serialises the response as JSON; what cannot be is a function error.
            response = json.loads(json.dumps(response))
        except Exception:
            logger.exception("%s failed; the whole batch will be retried", self.function_name)
            self._counters.add(handler_errors=1)
            return set(message_ids)

        elapsed = time.monotonic() - started
        if elapsed > self.timeout_s:
            # A thread cannot be killed as Lambda kills a sandbox, so a timeout is only
            # noticed once the handler returns; the outcome is the same whole-batch failure.
            logger.error(
                "%s: task timed out after %.2f s (timeout %g s); the whole batch will be retried",
                self.function_name,
                elapsed,
                self.timeout_s,
            )
            self._counters.add(handler_errors=1)
            return set(message_ids)

        if not self.report_batch_item_failures:
            return set()
        failed = batch_item_failures(response, message_ids)
        if failed is None:
            logger.error(
                "%s returned an invalid partial batch response %r; the whole batch will be retried",
                self.function_name,
                response,
            )
            self._counters.add(handler_errors=1)
            return set(message_ids)
        return failed

    def _delete(self, messages: list[MessageTypeDef]) -> int:
        deleted = 0
        for chunk in pack_requests(messages):
            try:
                response = self._sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                        for index, message in enumerate(chunk)
                    ],
                )
            except (BotoCoreError, ClientError) as exc:
                # Undeleted successes come back after the visibility timeout, as in AWS.
                logger.warning("deleting %d processed messages failed: %s", len(chunk), exc)
                continue
            deleted += len(response.get("Successful", []))
            for failure in response.get("Failed", []):
                logger.warning("deleting a processed message failed: %s", failure)
        return deleted

    # ------------------------------------------------------------------ checks

    def _check_visibility_timeout(self) -> None:
        # AWS refuses to create the mapping in this case, because messages would be
        # redelivered while an invocation may still be working on them.
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"]
        )["Attributes"]
        visibility_timeout = int(attributes["VisibilityTimeout"])
        if visibility_timeout < self.timeout_s:
            raise ValueError(
                f"Queue visibility timeout: {visibility_timeout} seconds is less than "
                f"Function timeout: {self.timeout_s:g} seconds"
            )

    def _in_flight_count(self) -> int:
        with self._in_flight_lock:
            return self._in_flight


def _validate(
    batch_size: int,
    batching_window_s: float,
    maximum_concurrency: int,
    timeout_s: float,
    poll_wait_s: int,
) -> None:
    # The same limits the Lambda API enforces, so a local setting that works would deploy.
    if not 1 <= batch_size <= 10_000:
        raise ValueError("batch_size must be 1..10000")
    if not 0 <= batching_window_s <= 300:
        raise ValueError("batching_window_s must be 0..300")
    if batch_size > _SQS_MAX_MESSAGES_PER_RECEIVE and batching_window_s < 1:
        raise ValueError("a batch_size above 10 needs batching_window_s of at least 1")
    if not 1 <= maximum_concurrency <= 1000:
        raise ValueError("maximum_concurrency must be 1..1000")
    if not 0 < timeout_s <= 900:
        raise ValueError("timeout_s must be within (0, 900]")
    if not 0 <= poll_wait_s <= 20:
        raise ValueError("poll_wait_s must be 0..20 (the SQS long-poll limit)")
