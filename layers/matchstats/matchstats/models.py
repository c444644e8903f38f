"""Rows and results passed between the logic and data-access rooms."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from matchstats.messages import points_subject


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReceivedMessage(_Model):
    """One SQS message as a consumer sees it, whatever delivered it."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = Field(ge=1)
    # Forwarded to the dead-letter queue beside the reason (String attributes only).
    attributes: dict[str, str] = Field(default_factory=dict)


class JobStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"


class PointsJob(_Model):
    """A points message as the database sees it: a match id, or why there is none."""

    job_id: str
    match_id: int | None
    attempts: int
    parse_error: str | None = None
    # Kept in job_history for the job's detail.
    body: str | None = None

    @property
    def subject(self) -> str:
        """job_history's subject (messages.points_subject)."""
        return points_subject(self.match_id)


class PointsOutcomeKind(StrEnum):
    OK = "ok"
    INVALID_MESSAGE = "invalid_message"
    MATCH_NOT_FOUND = "match_not_found"
    MISSING_SCORES = "missing_scores"


class PointsOutcomeRow(_Model):
    job_id: str
    match_id: int | None
    outcome: PointsOutcomeKind
    error: str | None
    status: str | None
    score_version: int | None
    changed: bool


class PointsBatchWrite(_Model):
    outcomes: list[PointsOutcomeRow]
    # The database clock after the commit: a refresh that starts later sees every row.
    committed_at: datetime
    # Standings keys logged for the refresh (migration 0008): 0 when nothing changed.
    keys_changed: int


class RefreshOutcome(StrEnum):
    """What became of a refresh request (job_history.outcome)."""

    EXECUTED = "executed"  # a refresh of one of its views ran for it
    COVERED = "covered"  # skipped: a refresh started after the request was made
    UNCHANGED = "unchanged"  # skipped: nothing changed since the last refresh


class JobRecord(_Model):
    job_id: str
    subject: str
    status: JobStatus
    attempts: int
    error: str | None = None
    error_kind: str | None = None
    body: str | None = None
    outcome: RefreshOutcome | None = None
    # View name -> its decision, for a refresh request.
    view_outcomes: dict[str, RefreshOutcome] | None = None


class JobHistoryRow(_Model):
    id: int
    job_type: str
    job_id: str
    subject: str | None
    status: JobStatus
    attempts: int
    error: str | None
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    error_kind: str | None = None
    body: str | None = None
    outcome: RefreshOutcome | None = None
    view_outcomes: dict[str, RefreshOutcome] | None = None


class StandingsMode(StrEnum):
    """How competition_standings and competitor_stats are maintained (SPEC section 2)."""

    MATERIALIZED_VIEW = "materialized-view"
    INCREMENTAL = "incremental"


class ViewState(_Model):
    """A view's standing, read under its refresh lock."""

    view_name: str
    last_started_at: datetime | None
    # Whether the view's change log names any key (migration 0008).
    changes_pending: bool
    populated: bool
    mode: StandingsMode = StandingsMode.MATERIALIZED_VIEW
    now: datetime  # the database clock: when a refresh decided now would start


class ViewRefreshRecord(_Model):
    view_name: str
    reasons: list[str]
    requests_covered: int
    forced: bool
    concurrently: bool
    oldest_request_at: datetime | None
    started_at: datetime


class ViewRefreshDone(_Model):
    finished_at: datetime
    duration_ms: int
    # Keys the refresh recomputed (the change log's, or every key of a full one).
    keys: int = 0
    # Whether any row of the view changed: in incremental mode, rows that differ; in
    # materialized-view mode, any key logged (the refresh does not say which rows moved).
    changed: bool = False
    # The competitions whose standings rows changed (or, for a materialized view, whose
    # keys were logged); empty for competitor_stats, which is not by competition.
    competition_ids: list[int] = Field(default_factory=list)
