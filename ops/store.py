"""Data access for operator tooling (the `matchstats` command and its console): reads for
status, job history and recompute selection, and the migrations. Read-only apart from
`migrate`. Its SQL is in ops/sql/; it runs on an operator's machine, never in Lambda."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict

from matchstats.config import Pooler
from matchstats.db.connection import ConnectionProvider, Limits, connect
from matchstats.db.migrate import MIGRATION_LOCK_TIMEOUT_MS, apply_migrations
from matchstats.db.sql import load_sql as load_layer_sql
from matchstats.errors import DatabaseUnavailableError, MatchstatsError
from matchstats.messages import REFRESHABLE_VIEWS
from matchstats.models import JobHistoryRow, JobStatus, RefreshOutcome, StandingsMode
from ops.sql import load_sql

# The operator waits for an answer, but not for ever.
READ_LIMITS = Limits(statement_timeout_ms=30_000, lock_timeout_ms=5_000)
MIGRATION_LIMITS = Limits(statement_timeout_ms=0, lock_timeout_ms=MIGRATION_LOCK_TIMEOUT_MS)


class ViewStatusRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    view_name: str
    last_started_at: datetime | None
    last_finished_at: datetime | None
    mode: StandingsMode
    # Keys the view's change log names: what its next refresh recomputes or includes.
    keys_waiting: int
    changed_at: datetime | None  # when the oldest of them was logged
    changes_waiting: bool
    last_duration_ms: int | None
    last_freshness_ms: int | None = None
    now: datetime  # the database clock, to age the timestamps without trusting ours


class ViewOutcomeRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    view_name: str
    outcome: RefreshOutcome
    finished_at: datetime
    subject: str | None


class StandingRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    competition_id: int
    competition: str
    rank: int
    competitor_id: int
    competitor: str
    played: int
    won: int
    drawn: int
    lost: int
    score_for: int
    score_against: int
    score_diff: int
    points: int


class JobRun(JobHistoryRow):
    """A job_history row as the operator reads it: with how many runs of the same job
    (its type and message id) the history holds after it, so that a failed run whose
    retry is not among the rows read is still known to have been retried."""

    later_runs: int = 0


class MatchVersion(BaseModel):
    model_config = ConfigDict(frozen=True)

    match_id: int
    score_version: int


class DependentViewsError(MatchstatsError):
    """An application view (or rule, or function) depends on a standings object that a
    mode switch replaces; PostgreSQL refuses to drop it (SQLSTATE 2BP01)."""


class StandingsBusyError(MatchstatsError):
    """A mode switch did not get its locks within MIGRATION_LIMITS' lock wait (SQLSTATE
    55P03): a refresh or another switch held the standings, or readers never left the swap
    a moment. Nothing was changed."""


def _busy(mode: StandingsMode, exc: pg_errors.LockNotAvailable) -> str:
    """Which wait ran out, from where in the switch the lock timeout was raised."""
    waited = f"{MIGRATION_LIMITS.lock_timeout_ms / 1000:g} s"
    if "matchstats_swap_standings" in (exc.diag.context or ""):
        why = (
            f"readers of competition_table, competition_standings or competitor_stats left"
            f" the swap no moment to take its locks in {waited} (it gives way to them)."
            " Nothing was changed; run it again at a quieter moment, or end the session"
            " that keeps a transaction open on them (pg_stat_activity)"
        )
    else:
        why = (
            f"a lock it needs was held for longer than {waited}, by a refresh, another"
            " switch, or a session holding the standings' tables or rows (pg_locks says"
            " which). Nothing was changed; run it again when it is done"
        )
    return f"cannot switch the standings to {mode.value}: {why}."


def _one_line(detail: str | None) -> str:
    return "; ".join((detail or "no detail given").split("\n"))


class OpsStore:
    def __init__(self, connections: ConnectionProvider):
        self._connections = connections

    def migrate(self) -> list[str]:
        """Applies the missing migrations (matchstats.db.migrate); returns their versions."""
        with self._connections.session(MIGRATION_LIMITS) as conn:
            return apply_migrations(conn, schema=self._connections.schema)

    def set_standings_mode(self, mode: StandingsMode) -> bool:
        """Switches the standings to `mode` (matchstats_set_standings_mode, as migration 0012
        left it), in one transaction that waits for running refreshes. Returns whether it switched
        (False: already in that mode)."""
        with self._connections.transaction(MIGRATION_LIMITS) as conn:
            try:
                # The function's own first locks, taken first and in its order (the
                # refresh locks, then the mode's row), so that nothing can deadlock with it.
                # Of two switches at once the second waits here for the first to commit,
                # then reads the mode that one switched to.
                for view_name in sorted(REFRESHABLE_VIEWS):
                    conn.execute(load_layer_sql("lock_view"), {"view_name": view_name})
                before = conn.execute("SELECT mode FROM standings_mode FOR UPDATE").fetchone()
                conn.execute("SELECT matchstats_set_standings_mode(%s)", (mode.value,))
            except pg_errors.DependentObjectsStillExist as exc:
                raise DependentViewsError(
                    "cannot switch the standings: the switch replaces competition_standings,"
                    " competitor_stats and competition_table, and an object of the"
                    f" application's depends on them ({_one_line(exc.diag.message_detail)});"
                    " drop it, switch, then create it again. Nothing was changed."
                ) from exc
            except pg_errors.LockNotAvailable as exc:
                raise StandingsBusyError(_busy(mode, exc)) from exc
        return before is None or before[0] != mode.value

    def rebuilt_standings(self) -> tuple[list[int], datetime]:
        """What a rebuild of the standings may have changed, for StandingsRefreshed: every
        competition of the application's (a competition whose last match was voided has
        no standings rows left to name), and the database clock now, after the commit."""
        with self._connections.transaction(READ_LIMITS) as conn:
            ids = [row[0] for row in conn.execute("SELECT id FROM competitions ORDER BY id")]
            row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        return ids, row[0]

    def view_status(self) -> list[ViewStatusRow]:
        rows = self._fetch("view_status", {})
        return [ViewStatusRow.model_validate(row) for row in rows]

    def job_history(
        self,
        *,
        job_type: str | None = None,
        status: JobStatus | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 20,
    ) -> list[JobRun]:
        """Newest first. `subject` matches any part of the subject, case-insensitively
        (taken literally: % and _ are not wildcards); `since` and `until` bound the
        finish time (since inclusive)."""
        if subject is not None and not _is_text(subject):
            return []
        rows = self._fetch(
            "job_history",
            {
                "job_type": job_type,
                "status": status.value if status is not None else None,
                "subject": subject or None,
                "since": since,
                "until": until,
                "limit": limit,
            },
        )
        return [JobRun.model_validate(row) for row in rows]

    def job_runs(self, key: str) -> list[JobRun]:
        """The runs of one job, oldest first: `key` is the message id the job ran for (its
        SQS message id; `manual-...` for `refresh --wait`) or the job_history id of any of
        its runs."""
        if not _is_text(key):
            return []
        row_id = int(key) if key.isdigit() and int(key) < 2**63 else None
        rows = self._fetch("job_runs", {"key": key, "row_id": row_id})
        return [JobRun.model_validate(row) for row in rows]

    def view_outcomes(self, limit: int = 400) -> list[ViewOutcomeRow]:
        """Each refresh request's decision per view, newest first."""
        rows = self._fetch("view_outcomes", {"limit": limit})
        return [ViewOutcomeRow.model_validate(row) for row in rows]

    def standings(self, limit: int = 200) -> list[StandingRow]:
        """competition_table with names, by competition then rank."""
        rows = self._fetch("standings", {"limit": limit})
        return [StandingRow.model_validate(row) for row in rows]

    def recompute_targets(self, competition_ids: Sequence[int] | None) -> list[MatchVersion]:
        """Matches whose points a recompute may change, of these competitions (None: all)."""
        rows = self._fetch(
            "recompute_targets",
            {"competition_ids": list(competition_ids) if competition_ids is not None else None},
        )
        return [MatchVersion.model_validate(row) for row in rows]

    def find_matches(self, match_ids: Sequence[int]) -> list[MatchVersion]:
        rows = self._fetch("find_matches", {"match_ids": list(match_ids)})
        return [MatchVersion.model_validate(row) for row in rows]

    def find_competitions(self, competition_ids: Sequence[int]) -> list[int]:
        rows = self._fetch("find_competitions", {"competition_ids": list(competition_ids)})
        return [int(row["id"]) for row in rows]

    def _fetch(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            with (
                self._connections.transaction(READ_LIMITS) as conn,
                conn.cursor(row_factory=dict_row) as cur,
            ):
                return cur.execute(load_sql(name), params).fetchall()
        except DatabaseUnavailableError as exc:
            if isinstance(exc.__cause__, pg_errors.UndefinedTable):
                raise DatabaseUnavailableError(
                    f"{exc} (has the database been migrated?)"
                ) from exc.__cause__
            raise


def _is_text(value: str) -> bool:
    """Whether `value` can be sent to the database as text. Bytes of argv that are not
    UTF-8 reach Python as lone surrogates: no id or subject holds them, so a lookup by
    them matches nothing (psycopg would fail to encode them)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextmanager
def closing_connections(
    conninfo: Callable[[], str], *, pooler: Pooler = Pooler.NONE, schema: str = "public"
) -> Iterator[ConnectionProvider]:
    """A ConnectionProvider for a short-lived process (the operator's command): every
    connection it opened is closed on exit."""
    opened: list[psycopg.Connection] = []

    def open_tracked(info: str) -> psycopg.Connection:
        conn = connect(info)
        opened.append(conn)
        return conn

    try:
        yield ConnectionProvider(conninfo, open_tracked, pooler=pooler, schema=schema)
    finally:
        for conn in opened:
            conn.close()
