"""`matchstats refresh --wait` (ops.refresh_now) tells the app of every view it refreshed,
also when a later view's refresh fails: the first view's refresh committed and consumed
its change log, so no later refresh would name its competitions again."""

from __future__ import annotations

from typing import Any

import pytest

from matchstats.errors import DatabaseUnavailableError
from matchstats.events import StandingsRefreshed
from matchstats.messages import REFRESHABLE_VIEWS, RefreshScope
from ops.refresh_now import refresh_now
from tests.fakes import InMemoryJobStore, InMemoryRefreshStore
from tests.unit.test_refresh_logic import view_state

STANDINGS, STATS = REFRESHABLE_VIEWS


class RecordingEvents:
    def __init__(self) -> None:
        self.published: list[StandingsRefreshed] = []

    def publish(self, refreshed: StandingsRefreshed, **_: Any) -> bool:
        self.published.append(refreshed)
        return True


def refresh_both_now(store: InMemoryRefreshStore, events: RecordingEvents) -> None:
    """`matchstats refresh --force --wait` on the in-memory stores."""
    refresh_now(
        store,  # type: ignore[arg-type]
        InMemoryJobStore(),  # type: ignore[arg-type]
        scope=RefreshScope.ALL,
        force=True,
        timeout_ms=10_000,
        events=events,  # type: ignore[arg-type]
    )


def test_a_view_that_committed_is_told_even_when_the_next_one_fails() -> None:
    # Given competition 1's standings changed, and competitor_stats' refresh failing
    store = InMemoryRefreshStore(
        {v: view_state(v) for v in REFRESHABLE_VIEWS},
        changed_competitions={STANDINGS: [1]},
        fail_with={STATS: DatabaseUnavailableError("database unavailable [55P03]: lock timeout")},
    )
    events = RecordingEvents()

    # When the operator refreshes both views now
    with pytest.raises(DatabaseUnavailableError):
        refresh_both_now(store, events)

    # Then the refresh that committed was told: its view and competition
    assert [(e.views, e.competition_ids) for e in events.published] == [([STANDINGS], [1])]


def test_both_views_changed_are_told_in_one_event() -> None:
    store = InMemoryRefreshStore(
        {v: view_state(v) for v in REFRESHABLE_VIEWS},
        changed_competitions={STANDINGS: [2, 1], STATS: []},
    )
    events = RecordingEvents()
    refresh_both_now(store, events)
    assert [(e.views, e.competition_ids) for e in events.published] == [
        ([STANDINGS, STATS], [1, 2])
    ]
