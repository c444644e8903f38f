"""RefreshApiFunction: POST /cron/update-stats (API Gateway REST) -> one refresh request.

The caller proves itself with `Authorization: Bearer <cron secret>`. That header is the
secret, so nothing here logs the event or its headers, and the resolver's debug mode
(which prints whole events) is switched off whatever the environment says.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any, Literal, cast

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, UnauthorizedError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.openapi.types import (
    OpenAPIResponseContentModel,
    OpenAPIResponseContentSchema,
)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from matchstats.config import ApiSettings
from matchstats.cron_secret import CronSecret
from matchstats.errors import TransientError
from matchstats.messages import RefreshReason, RefreshScope
from matchstats.observability import logger, metrics, tracer
from matchstats.queues import Queues
from matchstats.refresh_requests import enqueue_refresh

UPDATE_STATS_PATH = "/cron/update-stats"
SECURITY_SCHEME = "cronSecret"
_DEPENDENCIES = "dependencies"
_RETRY_AFTER_S = "30"
_BEARER_REQUIRED = "send the cron secret as Authorization: Bearer <secret>"
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


@cache
def dependencies() -> ApiDependencies:
    """Built once per execution environment (cold start) and reused while warm, so the
    cron secret's cache and the forced-fetch rate limit live as long as the environment."""
    settings = ApiSettings.from_env()
    return ApiDependencies(
        settings=settings, cron_secret=CronSecret.from_settings(settings), queues=Queues()
    )


app = APIGatewayRestResolver(enable_validation=True, debug=False)

_ERROR_CONTENT: dict[str, OpenAPIResponseContentSchema | OpenAPIResponseContentModel] = {
    content_types.APPLICATION_JSON: {"model": ErrorBody}
}


@app.post(
    UPDATE_STATS_PATH,
    status_code=HTTPStatus.ACCEPTED.value,
    summary="Ask for a refresh of the standings and stats",
    description=(
        "Queues one refresh request (reason `api`, no delay) and answers at once; the"
        " refresh itself runs asynchronously. Other methods on this path answer 405."
    ),
    responses={
        # No content given: documented from the return annotation.
        202: {"description": "The refresh request is queued."},
        400: {"description": "Unknown scope or malformed body.", "content": _ERROR_CONTENT},
        401: {"description": "Missing or wrong cron secret.", "content": _ERROR_CONTENT},
        503: {"description": "The request could not be queued; retry.", "content": _ERROR_CONTENT},
    },
    operation_id="updateStats",
    tags=["refresh"],
    security=[{SECURITY_SCHEME: []}],
)
def update_stats(
    body: Annotated[RefreshRequestBody, Body()] = RefreshRequestBody(),  # noqa: B008 - immutable
) -> RefreshAccepted:
    deps = _dependencies()
    if not _authorized(deps):
        raise UnauthorizedError(_BEARER_REQUIRED)
    message_id = enqueue_refresh(
        deps.settings.refresh_queue_url,
        scope=body.scope,
        reason=RefreshReason.API,
        queues=deps.queues,
    )
    metrics.add_metric("RefreshApiAccepted", MetricUnit.Count, 1)
    logger.info("refresh requested", extra={"scope": body.scope.value, "messageId": message_id})
    return RefreshAccepted(scope=body.scope, message_id=message_id)


# Powertools leaves exception_handler untyped, hence the ignores below.
@app.exception_handler(UnauthorizedError)  # type: ignore[untyped-decorator]
def _unauthorized(_: UnauthorizedError) -> Response[Any]:
    return _unauthorized_response()


@app.exception_handler([RequestValidationError, RequestUnsupportedContentType])  # type: ignore[untyped-decorator]
def _bad_request(exc: RequestValidationError | RequestUnsupportedContentType) -> Response[Any]:
    content_type = app.current_event.headers.get("content-type")
    return _refuse_body(_describe(exc, content_type))


@app.exception_handler(ValueError)  # type: ignore[untyped-decorator]
def _unreadable_body(exc: ValueError) -> Response[Any]:
    # Powertools' multipart/form-data parsing lets a ValueError out (no boundary, a body
    # that is not Latin-1) instead of a RequestValidationError: a bad body all the same.
    content_type = (app.current_event.headers.get("content-type") or "").strip().lower()
    if not content_type.startswith("multipart/"):
        raise exc
    return _refuse_body("send the body as JSON, with Content-Type: application/json")


def _refuse_body(problem: str) -> Response[Any]:
    # Body validation runs before the route, so the secret is checked here too: a caller
    # without it gets 401 whatever its body, and learns nothing about what is accepted.
    try:
        authorized = _authorized(_dependencies())
    except TransientError as error:
        return _unavailable_response(error)
    if not authorized:
        return _unauthorized_response()
    # SPEC section 7 answers a bad body with 400, not the resolver's 422 (or 415).
    return _error(HTTPStatus.BAD_REQUEST, problem)


@app.not_found
def _no_route(_: NotFoundError) -> Response[Any]:
    event = app.current_event
    if event.path == UPDATE_STATS_PATH:
        return _error(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"{event.http_method} is not allowed on {UPDATE_STATS_PATH}; use POST",
            headers={"Allow": "POST"},
        )
    return _error(HTTPStatus.NOT_FOUND, "Not found")


@app.exception_handler(TransientError)  # type: ignore[untyped-decorator]
def _unavailable(exc: TransientError) -> Response[Any]:
    return _unavailable_response(exc)


def _unauthorized_response() -> Response[Any]:
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


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer <token>` header (scheme in any case)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _authorized(deps: ApiDependencies) -> bool:
    event = app.current_event
    token = bearer_token(event.headers.get("authorization"))
    if token is not None and deps.cron_secret.matches(token):
        return True
    # Why it failed and from where, never what was presented.
    logger.warning(
        "refused a request without the cron secret",
        extra={
            "problem": "no bearer token" if token is None else "wrong secret",
            "sourceIp": event.request_context.identity.source_ip,
        },
    )
    return False


def _describe(
    exc: RequestValidationError | RequestUnsupportedContentType, content_type: str | None
) -> str:
    if content_type and not content_type.strip().lower().startswith("application/json"):
        return "send the body as JSON, with Content-Type: application/json"
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


def _error(
    status: HTTPStatus, message: str, headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=ErrorBody(statusCode=status.value, message=message).model_dump_json(),
        headers=headers,
    )


def _dependencies() -> ApiDependencies:
    return cast(ApiDependencies, app.context[_DEPENDENCIES])


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST,
    clear_state=True,
    # Explicit, so POWERTOOLS_LOGGER_LOG_EVENT cannot log the Authorization header.
    log_event=False,
)
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, deps: ApiDependencies | None = None
) -> dict[str, Any]:
    """`deps` lets a test hand in fakes; Lambda calls with (event, context) only."""
    app.append_context(  # type: ignore[no-untyped-call]
        **{_DEPENDENCIES: deps if deps is not None else dependencies()}
    )
    return app.resolve(event, context)
