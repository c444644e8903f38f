"""A local stand-in for API Gateway's REST API: HTTP on 127.0.0.1 in, Lambda proxy
events to the template's Api-triggered functions, proxy responses back out."""

from __future__ import annotations

import base64
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devstack.lambda_context import LOCAL_ACCOUNT_ID

logger = logging.getLogger(__name__)

Invoke = Callable[[dict[str, Any]], Any]
STAGE = "prod"


class Route:
    def __init__(self, method: str, path: str, invoke: Invoke):
        self.method, self.path, self.invoke = method.upper(), path, invoke

    def matches(self, method: str, path: str) -> bool:
        return path == self.path and self.method in ("ANY", method)


class LocalApiGateway:
    """Serves `routes` on 127.0.0.1 (a free port unless one is given)."""

    def __init__(self, routes: list[Route], port: int = 0):
        self._routes = routes
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalApiGateway:
        self._thread.start()
        logger.info("local API listening on %s", self.url)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_path)
        route = next((r for r in self._routes if r.matches(method, split.path)), None)
        if route is None:
            # What the template's MISSING_AUTHENTICATION_TOKEN gateway response answers.
            return 404, {"Content-Type": "application/json"}, b'{"message": "Not found"}'
        event = proxy_event(route.path, method, split.path, split.query, headers, body, source_ip)
        try:
            response = route.invoke(event)
        except Exception:
            logger.exception("integration failed")
            return (
                502,
                {"Content-Type": "application/json"},
                b'{"message": "Internal server error"}',
            )
        return proxy_response(response)


def proxy_event(
    resource: str,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    source_ip: str,
) -> dict[str, Any]:
    """The REST API (v1) Lambda proxy integration event."""
    multi_query = parse_qs(query, keep_blank_values=True) or None
    now = datetime.now(UTC)
    text = body.decode("utf-8") if body else None
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers or None,
        "multiValueHeaders": {name: [value] for name, value in headers.items()} or None,
        "queryStringParameters": (
            {name: values[-1] for name, values in multi_query.items()} if multi_query else None
        ),
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT_ID,
            "apiId": "local",
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent")},
        },
        "body": text,
        "isBase64Encoded": False,
    }


def proxy_response(response: Any) -> tuple[int, dict[str, str], bytes]:
    if not isinstance(response, dict) or "statusCode" not in response:
        # API Gateway's answer to a malformed proxy response.
        return 502, {"Content-Type": "application/json"}, b'{"message": "Internal server error"}'
    headers = {name: str(value) for name, value in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[name] = ", ".join(str(v) for v in values)
    body = response.get("body") or ""
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else str(body).encode()
    return int(response["statusCode"]), headers, raw


def _handler_class(gateway: LocalApiGateway) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, payload = gateway.handle(
                self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
            )
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("api: " + format, *args)

    return _Handler
