"""The demo, smaller, end to end through the local stack: the scoring Lambda's
messages, both SQS functions under their event source mappings, the schedule and
the HTTPS endpoint, all from template.yaml."""

from __future__ import annotations

import io

from devstack.demo import run_demo


def test_a_small_demo_produces_standings_equal_to_a_recomputation() -> None:
    # Given a season of two competitions of six, played through the local stack
    out = io.StringIO()

    # When the demo runs end to end
    report = run_demo(competitions=2, competitors=6, burst_size=20, out=out, progress=False)

    # Then every check held: points, standings and stats equal a recomputation
    assert report.checks == {
        "match_points": True,
        "competition_standings": True,
        "competitor_stats": True,
        "nothing dead-lettered": True,
        "every message processed once": True,
    }
    assert report.points_processed == report.points_sent == 2 * 30 + 2
    assert report.api_status == 202
    # ...the refreshes were coalesced (fewer refreshes than requests), and it said so
    assert 0 < sum(report.refreshes_executed.values()) < 2 * report.refresh_requests
    assert "OK" in out.getvalue()
    assert "League 2 (top 5 of 6)" in out.getvalue()
    # ...and its figures add up: the voided match is not counted completed, and every
    # view request was either coalesced into a refresh that ran or skipped
    assert report.matches_completed == 2 * 30 - 1
    assert report.requests_answered + report.requests_skipped == 2 * report.refresh_requests
    assert f"matches completed  {2 * 30 - 1} (after 1 corrected and 1 voided)" in out.getvalue()
