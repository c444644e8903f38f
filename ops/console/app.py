"""The console's web application: server-rendered pages (Flask and Jinja2), updated in
place by htmx, and the same data as JSON under /api.

Security, since the page can discard messages and shows their bodies:
- it is served on 127.0.0.1 only (ops.console.server), and answers only requests whose
  Host is that address or localhost with its port, so a DNS-rebinding page cannot read it;
- the URL printed at start carries a random login token; opening it sets a session cookie
  (HttpOnly, SameSite=Strict), and every other request without that session gets 403;
- every action is a POST that must come from the console's own origin (Origin header)
  and carry the session's CSRF token (Flask-WTF, sent by htmx as X-CSRFToken), so no
  cross-site form or script can trigger one;
- destructive actions (discard, redrive) take the message ids the operator confirmed on
  a confirmation panel, and only those;
- nothing rendered holds a credential: the database URL, the cron secret and the queue
  URLs stay in the Context.

Message bodies, reasons, error kinds and source message ids are whatever was sent to a
queue, so the page treats them as hostile:
- every template is autoescaped, and none marks message-derived data safe;
- URLs are built with url_for, and an id or kind becomes part of one only when it has
  the shape ours have (ops.ids); the routes check the same;
- htmx swaps only HTML fragments rendered here: the JSON endpoints refuse htmx requests,
  and htmx runs with eval and swapped scripts off;
- a Content-Security-Policy allows scripts from the console's own files only, so even a
  tag that slipped through could run nothing.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, session
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf

from matchstats.errors import MatchstatsError
from matchstats.messages import RefreshScope
from ops import dlq
from ops.console.data import ConsoleData
from ops.console.rows import to_json
from ops.ids import is_error_kind, is_message_id
from ops.render import duration
from ops.settings import DEAD_LETTER_PAIRS

HERE = Path(__file__).resolve().parent
TOKEN_PARAMETER = "token"  # noqa: S105 - the query parameter's name
SINCE_CHOICES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(days=1)}
ACTIONS = ("discard", "redrive")
# How often each panel reloads itself. The dead-letter messages are not polled: they are
# listed on demand and after each action (see ConsoleData.dead_letters).
POLL = {"overview": "2s", "standings": "3s", "jobs": "3s"}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def create_app(data: ConsoleData, *, token: str, allowed_hosts: set[str]) -> Flask:
    """The console over `data`. `token` is the login token of the printed URL;
    `allowed_hosts` the Host values it answers (e.g. {"127.0.0.1:8123", "localhost:8123"})."""
    app = Flask(
        __name__,
        template_folder=str(HERE / "templates"),
        static_folder=str(HERE / "static"),
    )
    app.config.update(
        SECRET_KEY=secrets.token_urlsafe(32),
        SESSION_COOKIE_NAME="matchstats_console",
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
        # Checked by _guard, after the origin, rather than by the extension's own hook.
        WTF_CSRF_CHECK_DEFAULT=False,
        # The page stays open for hours; the token lives as long as the session.
        WTF_CSRF_TIME_LIMIT=None,
    )
    csrf = CSRFProtect(app)
    # Every template, whatever its name (Flask's default escapes .html and a few others).
    app.jinja_env.autoescape = True
    app.jinja_env.globals.update(
        csrf_token=generate_csrf, duration=duration, ago=_ago, poll=POLL, clock=_clock
    )
    app.jinja_env.tests.update(message_id=is_message_id, error_kind=is_error_kind)
    _guard(app, csrf, token=token, allowed_hosts=allowed_hosts)
    _answer_errors_and_headers(app)
    _pages(app, data)
    _actions(app, data)
    _json(app, data)
    return app


def _guard(app: Flask, csrf: CSRFProtect, *, token: str, allowed_hosts: set[str]) -> None:
    """Every request: a known Host, then the login token or the session it set; every
    action: the console's own Origin and the session's CSRF token."""

    @app.before_request
    def guard() -> Response | None:
        if request.host not in allowed_hosts:
            abort(403, "unknown Host: open the console at the URL it printed")
        if request.endpoint == "static":
            return None
        offered = request.args.get(TOKEN_PARAMETER)
        if offered is not None:
            if not secrets.compare_digest(offered, token):
                abort(403, "wrong login token: open the URL the console printed")
            session["signed_in"] = True
            return redirect(request.path)  # type: ignore[return-value]
        if not session.get("signed_in"):
            abort(403, "not signed in: open the URL the console printed (it carries a token)")
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin != f"http://{request.host}":
                abort(403, "actions come from the console's own page only")
            csrf.protect()
        if request.path.startswith("/api/") and "HX-Request" in request.headers:
            # htmx would swap the JSON, message bodies and all, into the page as HTML.
            abort(400, "the JSON endpoints are not for htmx: ask for a /fragments/ page")
        return None


def _answer_errors_and_headers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def bad_token(error: CSRFError) -> tuple[str, int]:
        return f"refused: {error.description}", 400

    @app.errorhandler(MatchstatsError)
    def unavailable(error: MatchstatsError) -> tuple[str, int]:
        return render_template("message.html", ok=False, message=str(error)), 503

    @app.after_request
    def no_caching(response: Response) -> Response:
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


def _pages(app: Flask, data: ConsoleData) -> None:
    """The page and the fragments htmx swaps into it."""

    @app.get("/")
    def index() -> str:
        filters = _job_filters()
        return render_template(
            "index.html",
            overview=data.overview(),
            standings=data.standings(),
            jobs=data.jobs(**filters),
            filters=request.args,
            dead_letters=data.dead_letters(),
            listed_at=data.now(),
            since_choices=SINCE_CHOICES,
        )

    @app.get("/fragments/overview")
    def overview_fragment() -> str:
        return render_template("overview.html", overview=data.overview())

    @app.get("/fragments/standings")
    def standings_fragment() -> str:
        return render_template("standings.html", standings=data.standings())

    @app.get("/fragments/jobs")
    def jobs_fragment() -> str:
        return render_template("jobs.html", jobs=data.jobs(**_job_filters()))

    @app.get("/fragments/jobs/<key>")
    def job_fragment(key: str) -> str:
        detail = data.job(_job_key(key))
        if detail is None:
            abort(404, f"no job run with id {key}")
        return render_template("job.html", job=detail)

    @app.get("/fragments/dead-letters")
    def dead_letters_fragment() -> str:
        return render_template(
            "dead_letters.html", dead_letters=data.dead_letters(), listed_at=data.now()
        )

    @app.get("/fragments/confirm/<queue>/<action>")
    def confirm_fragment(queue: str, action: str) -> str:
        _check(queue, action)
        selection = _selection()
        return render_template(
            "confirm.html",
            queue=queue,
            queue_name=DEAD_LETTER_PAIRS[queue].dead_letter.value,
            source_name=DEAD_LETTER_PAIRS[queue].source.value,
            action=action,
            selection=selection,
            messages=data.preview(queue, selection),
        )


def _actions(app: Flask, data: ConsoleData) -> None:
    """The POSTs that change something: each answers with a message and an htmx event."""

    @app.post("/actions/<queue>/<action>")
    def dead_letter_action(queue: str, action: str) -> Any:
        _check(queue, action)
        if request.form.get("confirm") != "yes":
            abort(400, "not confirmed: confirm the action on its confirmation panel")
        ids = frozenset(request.form.getlist("ids"))
        if not ids:
            abort(400, "no message ids: nothing was confirmed")
        if not all(is_message_id(message_id) for message_id in ids):
            abort(400, "ids: not message ids")
        result = data.discard(queue, ids) if action == "discard" else data.redrive(queue, ids)
        return _answer(result.ok, result.message, refresh="dead-letters-changed")

    @app.post("/actions/refresh")
    def refresh_action() -> Any:
        try:
            scope = RefreshScope(request.form.get("scope", RefreshScope.ALL.value))
        except ValueError:
            abort(400, "unknown scope")
        result = data.refresh(scope)
        return _answer(result.ok, result.message, refresh="overview-changed")


def _json(app: Flask, data: ConsoleData) -> None:
    """The same data as the pages, as JSON under /api."""

    @app.get("/api/overview")
    def overview_json() -> Response:
        return jsonify(to_json(data.overview()))

    @app.get("/api/standings")
    def standings_json() -> Response:
        return jsonify(data.standings())

    @app.get("/api/jobs")
    def jobs_json() -> Response:
        return jsonify(to_json(data.jobs(**_job_filters())))

    @app.get("/api/jobs/<key>")
    def job_json(key: str) -> Response:
        detail = data.job(_job_key(key))
        if detail is None:
            abort(404, f"no job run with id {key}")
        return jsonify(to_json(detail))

    @app.get("/api/dead-letters")
    def dead_letters_json() -> Response:
        return jsonify([{**to_json(queue), "total": queue.total} for queue in data.dead_letters()])


def _check(queue: str, action: str) -> None:
    if queue not in DEAD_LETTER_PAIRS or action not in ACTIONS:
        abort(404)


def _selection() -> dlq.Selection:
    """The confirmation's selection from ?kind= and ?id=; 400 for a malformed one."""
    kind = request.args.get("kind") or None
    message_id = request.args.get("id") or None
    if kind is not None and not is_error_kind(kind):
        abort(400, "kind: not an error kind")
    if message_id is not None and not is_message_id(message_id):
        abort(400, "id: not a message id")
    return dlq.Selection(kind=kind, message_id=message_id)


def _job_key(key: str) -> str:
    """`key` when it is shaped like a job id (a message id); 404 otherwise, as no job has it."""
    if not is_message_id(key):
        abort(404, "no job has an id of that shape")
    return key


def _answer(ok: bool, message: str, *, refresh: str) -> Any:
    if request.accept_mimetypes.best == "application/json":
        response = jsonify({"ok": ok, "message": message})
    else:
        response = Response(render_template("message.html", ok=ok, message=message))
    # htmx re-reads the panels that listen for this event.
    response.headers["HX-Trigger"] = refresh
    return response


def _job_filters() -> dict[str, Any]:
    args = request.args
    since = SINCE_CHOICES.get(args.get("since", ""))
    job_type = args.get("type") or None
    status = args.get("status") or None
    if job_type not in (None, "points", "refresh") or status not in (None, "completed", "failed"):
        abort(400, "type is points or refresh; status is completed or failed")
    return {
        "job_type": job_type,
        "status_filter": status,
        "subject": (args.get("subject") or "").strip() or None,
        "since": datetime.now(UTC) - since if since else None,
    }


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return duration(max(0.0, (datetime.now(UTC) - moment).total_seconds())) + " ago"


def _clock(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S") if moment else "-"
