"""What a consumer decided for each record of a batch, for the handler to report."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from matchstats.errors import MatchstatsError


class Disposition(StrEnum):
    COMPLETED = "completed"  # done (or already done); delete the message
    DEAD_LETTERED = "dead_lettered"  # permanent failure, copied to the DLQ; delete it
    RETRY = "retry"  # transient failure; leave it for redelivery after the backoff
    # Permanent failure too large to copy with its reason: fail it, visible again at
    # once, so that SQS redrive moves it to the dead-letter queue.
    LEFT_TO_REDRIVE = "left_to_redrive"


@dataclass(frozen=True)
class RecordResult:
    disposition: Disposition
    error: MatchstatsError | None = None
    changed: bool = False


@dataclass
class BatchResult:
    records: dict[str, RecordResult] = field(default_factory=dict)

    def count(self, disposition: Disposition) -> int:
        return sum(1 for r in self.records.values() if r.disposition is disposition)

    def raise_if_retry(self, message_id: str) -> None:
        """For the batch processor's record handler: a retry, or a message left to SQS
        redrive, is a record failure."""
        result = self.records[message_id]
        if result.disposition in (Disposition.RETRY, Disposition.LEFT_TO_REDRIVE):
            assert result.error is not None
            raise result.error
