"""`matchstats recompute`: points messages for a backfill or after a rules change.

Which matches: with --match, exactly those (each must exist). With --competition or
--all, every completed match and every match that still has match_points rows (a
voided or reopened match must lose its points); any other match has no points before
or after, so its message would change nothing. Recomputing is idempotent: running it
twice, or alongside the live pipeline, gives the same match_points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from matchstats.errors import MatchstatsError, QueueUnavailableError
from matchstats.producer import enqueue_points_calculations
from matchstats.queues import PartialSendError, SQSClient
from ops.store import MatchVersion, OpsStore

# Matches per producer call: 10 SendMessageBatch calls between progress updates.
PROGRESS_CHUNK = 100


class UnknownIdsError(MatchstatsError):
    """The operator named ids that are not in the database."""


def select_matches(
    store: OpsStore,
    *,
    match_ids: Sequence[int] | None = None,
    competition_ids: Sequence[int] | None = None,
) -> list[MatchVersion]:
    """The matches to recompute; None for both means every competition."""
    if match_ids is not None:
        wanted = list(dict.fromkeys(match_ids))
        found = {match.match_id: match for match in store.find_matches(wanted)}
        missing = [match_id for match_id in wanted if match_id not in found]
        if missing:
            raise UnknownIdsError(f"no such match: {_ids(missing)}")
        return [found[match_id] for match_id in wanted]
    if competition_ids is not None:
        wanted = list(dict.fromkeys(competition_ids))
        found_competitions = set(store.find_competitions(wanted))
        missing = [c for c in wanted if c not in found_competitions]
        if missing:
            raise UnknownIdsError(f"no such competition: {_ids(missing)}")
        return store.recompute_targets(wanted)
    return store.recompute_targets(None)


def enqueue(
    matches: Sequence[MatchVersion],
    queue_url: str,
    *,
    sqs_client: SQSClient,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> int:
    """Sends one points message per match (SendMessageBatch, 10 a call); returns the count."""
    sent = 0
    progress(0, len(matches))
    for start in range(0, len(matches), PROGRESS_CHUNK):
        chunk = matches[start : start + PROGRESS_CHUNK]
        try:
            enqueue_points_calculations(
                [(match.match_id, match.score_version) for match in chunk],
                queue_url=queue_url,
                sqs_client=sqs_client,
            )
        except PartialSendError as exc:
            sent += len(exc.sent)
            first = next(iter(exc.failed.values()))
            raise QueueUnavailableError(
                f"sent {sent} of {len(matches)} points messages; {len(exc.failed)} failed"
                f" ({first}); running the same recompute again is safe"
            ) from exc
        sent += len(chunk)
        progress(sent, len(matches))
    return sent


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
