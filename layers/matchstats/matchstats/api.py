"""The HTTP side of POST /cron/update-stats (SPEC section 7): the body and answer models,
the bearer check, and a Powertools REST resolver whose errors answer as SPEC says.

The caller proves itself with `Authorization: Bearer <cron secret>`. That header is the
secret, so nothing here logs the event or its headers, and the resolver's debug mode
(which prints whole events) is off whatever the environment says.

Where the bearer check runs: in the pinned Powertools (3.37) request validation is the
first middleware of every route, before any middleware of ours, so a body that fails
validation never reaches the check in `require_cron_secret`. The validation-error handler
therefore runs the same check before it answers 400: a caller without the secret gets 401
whatever its body, and learns nothing about what would be accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, UnauthorizedError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import (
    OpenAPIResponse,
    OpenAPIResponseContentModel,
    OpenAPIResponseContentSchema,
)
from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from matchstats.config import ApiSettings
from matchstats.cron_secret import CronSecret
from matchstats.errors import TransientError
from matchstats.messages import RefreshScope
from matchstats.observability import logger, metrics
from matchstats.queues import Queues

UPDATE_STATS_PATH = "/cron/update-stats"
SECURITY_SCHEME = "cronSecret"
_RETRY_AFTER_S = "30"
_BEARER_REQUIRED = "send the cron secret as Authorization: Bearer <secret>"
_SEND_JSON = "send the body as JSON, with Content-Type: application/json"
# Echoed field names come from the caller; keep an error message a message.
_MAX_FIELD_NAME = 64


class RefreshRequestBody(BaseModel):
    """The optional body of POST /cron/update-stats. No body at all means scope `all`."""

    # A misspelt field is named in a 400 rather than silently refreshing everything.
    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: RefreshScope = Field(
        default=RefreshScope.ALL,
        description="Which materialized views to refresh.",
    )


class RefreshAccepted(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    status: Literal["accepted"] = "accepted"
    scope: RefreshScope
    message_id: str = Field(description="SQS message id of the refresh request.")


class ErrorBody(BaseModel):
    """Every error answer, in the shape of the resolver's own 404."""

    statusCode: int
    message: str


@dataclass(frozen=True)
class ApiDependencies:
    settings: ApiSettings
    cron_secret: CronSecret
    queues: Queues


_ERROR_CONTENT: dict[str, OpenAPIResponseContentSchema | OpenAPIResponseContentModel] = {
    content_types.APPLICATION_JSON: {"model": ErrorBody}
}
# The route's documented answers (openapi.json); 202's body comes from its annotation.
RESPONSES: dict[int, OpenAPIResponse] = {
    202: {"description": "The refresh request is queued."},
    400: {"description": "Unknown scope or malformed body.", "content": _ERROR_CONTENT},
    401: {"description": "Missing or wrong cron secret.", "content": _ERROR_CONTENT},
    503: {"description": "The request could not be queued; retry.", "content": _ERROR_CONTENT},
}

# How the route documents itself in openapi.json (`@app.post(UPDATE_STATS_PATH, **ROUTE)`).
ROUTE: dict[str, Any] = {
    "status_code": HTTPStatus.ACCEPTED.value,
    "summary": "Ask for a refresh of the standings and stats",
    "description": (
        "Queues one refresh request (reason `api`, no delay) and answers at once; the"
        " refresh itself runs asynchronously. Other methods on this path answer 405."
    ),
    "responses": RESPONSES,
    "operation_id": "updateStats",
    "tags": ["refresh"],
    "security": [{SECURITY_SCHEME: []}],
}


def api_resolver(dependencies: Callable[[], ApiDependencies]) -> APIGatewayRestResolver:
    """A REST resolver with request validation, the bearer check on every route, and the
    error answers of SPEC section 7 (400, 401, 404, 405, 503, and 500 for a bug).

    `dependencies` is the function the routes take their ApiDependencies from through
    Powertools' `Depends`; a test replaces it with `app.dependency_overrides`, and the
    bearer check honours that replacement too.
    """
    app = APIGatewayRestResolver(enable_validation=True, debug=False)
    answers = _Answers(app, dependencies)
    app.use([answers.require_cron_secret])
    app.exception_handler([RequestValidationError, RequestUnsupportedContentType])(
        answers.bad_request
    )
    app.exception_handler(ValueError)(answers.unreadable_body)
    app.exception_handler(UnauthorizedError)(lambda _: _unauthorized())
    app.exception_handler(TransientError)(_unavailable_response)
    app.exception_handler(Exception)(_bug)
    app.not_found(answers.no_route)
    return app


class _Answers:
    """What the resolver answers besides its routes, with the dependencies in force."""

    def __init__(
        self, app: APIGatewayRestResolver, dependencies: Callable[[], ApiDependencies]
    ) -> None:
        self._app = app
        self._dependencies = dependencies

    def current(self) -> ApiDependencies:
        resolve: Callable[[], ApiDependencies] = self._app.dependency_overrides.get(
            self._dependencies, self._dependencies
        )
        return resolve()

    def require_cron_secret(
        self, app: APIGatewayRestResolver, next_middleware: NextMiddleware
    ) -> Any:
        if not authorized(app, self.current()):
            return _unauthorized()
        return next_middleware(app)

    def bad_request(
        self, exc: RequestValidationError | RequestUnsupportedContentType
    ) -> Response[Any]:
        return self._refuse_body(_describe(exc, self._app.current_event.headers))

    def unreadable_body(self, exc: ValueError) -> Response[Any]:
        # Powertools' multipart/form-data parsing lets a ValueError out (no boundary, a
        # body that is not Latin-1) instead of a RequestValidationError.
        if not _media_type(self._app.current_event.headers).startswith("multipart/"):
            raise exc
        return self._refuse_body(_SEND_JSON)

    def no_route(self, _: NotFoundError) -> Response[Any]:
        event = self._app.current_event
        if event.path == UPDATE_STATS_PATH:
            return _error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{event.http_method} is not allowed on {UPDATE_STATS_PATH}; use POST",
                headers={"Allow": "POST"},
            )
        return _error(HTTPStatus.NOT_FOUND, "Not found")

    def _refuse_body(self, problem: str) -> Response[Any]:
        try:
            allowed = authorized(self._app, self.current())
        except TransientError as error:
            return _unavailable_response(error)
        if not allowed:
            return _unauthorized()
        # SPEC section 7 answers a bad body with 400, not the resolver's 422 (or 415).
        return _error(HTTPStatus.BAD_REQUEST, problem)


def _bug(exc: Exception) -> Response[Any]:
    # A bug, not the caller's fault: logged with its trace, answered without detail.
    logger.exception("unexpected error", extra={"error_type": type(exc).__name__})
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; retry later")


def normalized(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its Content-Type media type in lower case, parameters kept: media
    types compare case-insensitively (RFC 9110, section 8.3.1), Powertools' validation
    compares them as given, so `Application/JSON` would not be read as JSON."""
    changed = dict(event)
    for key in ("headers", "multiValueHeaders"):
        headers = event.get(key)
        if not isinstance(headers, dict):
            continue
        changed[key] = {
            name: _lower_media_type(value) if name.lower() == "content-type" else value
            for name, value in headers.items()
        }
    return changed


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer <token>` header (scheme in any case,
    RFC 7235)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def authorized(app: APIGatewayRestResolver, deps: ApiDependencies) -> bool:
    """Whether the request carries the current cron secret. Logs a refusal with why and
    from where, never what was presented. Raises TransientError when the secret cannot be
    read at all (answered 503)."""
    event = app.current_event
    token = bearer_token(event.headers.get("authorization"))
    if token is not None and deps.cron_secret.matches(token):
        return True
    logger.warning(
        "refused a request without the cron secret",
        extra={
            "problem": "no bearer token" if token is None else "wrong secret",
            "sourceIp": event.request_context.identity.source_ip,
        },
    )
    return False


def _unauthorized() -> Response[Any]:
    metrics.add_metric("RefreshApiUnauthorized", MetricUnit.Count, 1)
    return _error(
        HTTPStatus.UNAUTHORIZED,
        _BEARER_REQUIRED,
        # RFC 6750: name the scheme the caller should use.
        headers={"WWW-Authenticate": 'Bearer realm="matchstats"'},
    )


def _unavailable_response(exc: TransientError) -> Response[Any]:
    logger.error("refresh request not queued", extra={"error": str(exc)})
    return _error(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "the refresh request could not be queued; retry later",
        headers={"Retry-After": _RETRY_AFTER_S},
    )


def _describe(exc: RequestValidationError | RequestUnsupportedContentType, headers: Any) -> str:
    media_type = _media_type(headers)
    if media_type and not media_type.startswith("application/json"):
        return _SEND_JSON
    problems = []
    for err in exc.errors():
        if err["type"] == "json_invalid":
            detail = err.get("ctx", {}).get("error", "cannot be decoded")
            problems.append(f"the body is not valid JSON ({detail})")
            continue
        # loc starts with "body"; what follows names the field, if any.
        field = ".".join(str(part) for part in err["loc"][1:])[:_MAX_FIELD_NAME]
        problems.append(f"{field or 'body'}: {err.get('msg', err['type'])}")
    return "; ".join(problems) or "malformed body"


def _media_type(headers: Any) -> str:
    return str(headers.get("content-type") or "").strip().lower()


def _lower_media_type(value: Any) -> Any:
    if isinstance(value, list):
        return [_lower_media_type(item) for item in value]
    if not isinstance(value, str):
        return value
    media_type, separator, parameters = value.partition(";")
    return media_type.lower() + separator + parameters


def _error(
    status: HTTPStatus, message: str, headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=ErrorBody(statusCode=status.value, message=message).model_dump_json(),
        headers=headers,
    )
