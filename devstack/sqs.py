"""Local SQS: moto's server on 127.0.0.1, one account per LocalSqs, serving one request
at a time. The bundle's queues, as the template declares them, are devstack/queue_specs.py's.

Local tooling only; nothing here ships to Lambda.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import boto3
from botocore.config import Config
from moto.cloudwatch.models import MetricDatum, MetricDatumBase
from moto.core.common_models import CloudWatchMetricProvider
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.server import ThreadedMotoServer
from moto.sqs.models import sqs_backends
from werkzeug.serving import make_server

from devstack import moto_clock
from devstack.service import Service

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = logging.getLogger(__name__)

LOCAL_REGION = "us-east-1"
# moto accepts any credentials; fixed dummies keep a developer's real ones out of play.
DUMMY_CREDENTIALS = "testing"
LOOPBACK = "127.0.0.1"

# How often a long poll, replayed as short polls, looks at the queue again.
_LONG_POLL_INTERVAL_S = 0.05
# Each LocalSqs is its own account; the first gets moto's default id.
_account_numbers = itertools.count(123_456_789_012)


class LocalSqs(Service):
    """moto's SQS server on a free loopback port, for tests, the demo and local invokes.

    moto keeps its state in module globals, shared by every server and ``mock_aws``
    in the process. So that two instances (a session's and a test module's, say)
    never see each other's queues, each one plays its own AWS account: the server
    stamps every request with the instance's account id, and stopping forgets that
    account's queues. (Setting MOTO_ACCOUNT_ID overrides the stamp and so shares
    one account among all instances.)
    """

    def __init__(self, region: str = LOCAL_REGION) -> None:
        self.region = region
        self.account_id = f"{next(_account_numbers):012d}"
        self._server: ThreadedMotoServer | None = None
        self._endpoint_url: str | None = None

    def start(self) -> LocalSqs:
        if self._server is not None:
            return self
        moto_clock.install()
        # Port 0 lets the server bind a free port itself, so no other process can take
        # the port between our choosing it and the server binding it.
        server = _SerializedMotoServer(self.account_id, ip_address=LOOPBACK, port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self._endpoint_url = f"http://{host}:{port}"
        logger.info("local SQS listening on %s", self._endpoint_url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stop()
        self._server = None
        self._endpoint_url = None
        _forget_account(self.account_id)
        logger.info("local SQS stopped")

    @property
    def endpoint_url(self) -> str:
        if self._endpoint_url is None:
            raise RuntimeError("LocalSqs is not running; call start() first")
        return self._endpoint_url

    def client(self, max_pool_connections: int = 20) -> SQSClient:
        """A boto3 SQS client for this server.

        Each call builds its own session because boto3 sessions are not thread-safe,
        while the client it returns may be shared by threads. The read timeout
        outlasts the longest long poll (20 s) so a quiet queue is not an error.
        """
        config = Config(
            max_pool_connections=max_pool_connections,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        session = boto3.session.Session()
        client: SQSClient = session.client(
            "sqs",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=DUMMY_CREDENTIALS,
            aws_secret_access_key=DUMMY_CREDENTIALS,
            config=config,
        )
        return client

    def environment(self) -> dict[str, str]:
        """Environment variables that point boto3 in a child process at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS,
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS,
        }


class _SerializedMotoServer(ThreadedMotoServer):
    """ThreadedMotoServer that serves one request at a time in one account.

    Its access log goes to debug level.
    """

    def __init__(self, account_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._account_id = account_id

    def _server_entry(self) -> None:
        # Same as the parent's, with the application wrapped.
        app = _OneRequestAtATime(DomainDispatcherApplication(create_backend_app), self._account_id)
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=_QuietRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

    def stop(self) -> None:
        server = self._server
        super().stop()
        if server is not None:
            server.server_close()  # the parent only stops serving; this releases the port


class _QuietRequestHandler(MotoRequestHandler):
    # One line per SQS call on stderr would bury the test output; errors still show.
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("%s -> %s", self.requestline, code)


class _OneRequestAtATime:
    """WSGI middleware that hands moto one request at a time, in one account.

    moto's SQS model is not thread-safe: a ReceiveMessage running alongside another
    receive or a delete can fail with "Set changed size during iteration" (HTTP 500,
    while the messages it had already marked stay invisible for a visibility timeout)
    and could hand one message to two consumers. Serialising requests removes both.
    A long poll must not hold the lock for its whole wait, so it is replayed as short
    polls until a message arrives or the wait is over, which is what a long poll
    answers too. Only the JSON protocol (boto3's) is rewritten; a query-protocol long
    poll would hold the lock while it waits.
    """

    def __init__(self, app: WSGIApplication, account_id: str) -> None:
        self._app = app
        self._account_id = account_id
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        # moto reads the account from this header; a caller that names one keeps it.
        environ.setdefault("HTTP_X_MOTO_ACCOUNT_ID", self._account_id)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target == "AmazonSQS.ReceiveMessage":
            return self._receive(environ, start_response)
        if target in _UNSUPPORTED_OPERATIONS:
            return _unsupported(target, start_response)
        status, headers, body = self._call_locked(environ)
        start_response(status, headers)
        return [body]

    def _call_locked(self, environ: WSGIEnvironment) -> tuple[str, list[tuple[str, str]], bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers)
            return lambda data: None  # the write() callable; moto's Flask app never calls it

        with self._lock:
            result = self._app(environ, capture)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return captured["status"], captured["headers"], body

    def _receive(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        wait_s = 0
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            request = None
        requested = request.get("WaitTimeSeconds", 0) if isinstance(request, dict) else None
        # An invalid wait goes to moto unchanged, so the caller gets moto's own error.
        if isinstance(requested, int) and 0 < requested <= 20:
            wait_s = requested
            raw = json.dumps({**request, "WaitTimeSeconds": 0}).encode()
        deadline = time.monotonic() + wait_s
        while True:
            status, headers, body = self._call_locked(
                {**environ, "wsgi.input": io.BytesIO(raw), "CONTENT_LENGTH": str(len(raw))}
            )
            if not status.startswith("200") or _has_messages(body) or time.monotonic() >= deadline:
                start_response(status, headers)
                return [body]
            time.sleep(_LONG_POLL_INTERVAL_S)


# moto has no message move tasks: it raises NotImplementedError, which its server turns
# into an HTTP 500 and a traceback on stderr (the `make dev` terminal). SQS answers an
# operation it does not support with HTTP 400 UnsupportedOperation, which clients take as
# "not here" (ops.sqs falls back to receive, send, delete) and do not retry.
_UNSUPPORTED_OPERATIONS = frozenset(
    {
        "AmazonSQS.StartMessageMoveTask",
        "AmazonSQS.ListMessageMoveTasks",
        "AmazonSQS.CancelMessageMoveTask",
    }
)


def _unsupported(target: str, start_response: StartResponse) -> list[bytes]:
    """The SQS JSON protocol's error answer (SQS Developer Guide, "Interpreting Amazon SQS
    JSON API responses"; the error code from the API Reference of these operations)."""
    operation = target.rsplit(".", 1)[-1]
    body = json.dumps(
        {
            "__type": "com.amazonaws.sqs#UnsupportedOperation",
            "message": f"{operation} is not supported by the local SQS",
        }
    ).encode()
    start_response(
        "400 Bad Request",
        [
            ("Content-Type", "application/x-amz-json-1.0"),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("x-amzn-query-error", "AWS.SimpleQueueService.UnsupportedOperation;Sender"),
        ],
    )
    return [body]


class _OldestMessageAge(CloudWatchMetricProvider):
    """AWS/SQS ApproximateAgeOfOldestMessage for every queue of the local SQS, as its
    CloudWatch would report it, read from moto's queues when a GetMetricData asks: no
    message is received for it, so no receive count changes. moto's CloudWatch asks each
    subclass of CloudWatchMetricProvider for its figures; requests reach it one at a time
    (_OneRequestAtATime), so the queues do not change while they are read.

    The age is that of the oldest message not deleted and not delayed, in flight or not,
    from its SentTimestamp (a message moved to a dead-letter queue keeps it)."""

    @staticmethod
    def get_cloudwatch_metrics(account_id: str, region: str) -> list[MetricDatumBase]:
        backends = sqs_backends.get(account_id)
        if backends is None or region not in backends:
            return []
        now_ms = time.time() * 1000
        data: list[MetricDatumBase] = []
        for name, queue in list(backends[region].queues.items()):
            # moto annotates sent_timestamp as None; it holds epoch milliseconds once sent.
            stamps: list[Any] = [message.sent_timestamp for message in queue._messages]
            sent = [
                int(stamp)
                for stamp, message in zip(stamps, queue._messages, strict=True)
                if stamp is not None and not message.delayed
            ]
            if not sent:
                continue
            data.append(
                MetricDatum(
                    namespace="AWS/SQS",
                    name="ApproximateAgeOfOldestMessage",
                    value=max(0.0, (now_ms - min(sent)) / 1000),
                    dimensions=[{"Name": "QueueName", "Value": name}],
                    timestamp=None,  # now
                    unit="Seconds",
                )
            )
        return data


def _has_messages(body: bytes) -> bool:
    try:
        return bool(json.loads(body or b"{}").get("Messages"))
    except (ValueError, AttributeError):
        return True  # not an answer we understand: hand it back rather than retry it


def _forget_account(account_id: str) -> None:
    account_backends = sqs_backends.pop(account_id, None)
    if account_backends is not None:
        account_backends.reset()
