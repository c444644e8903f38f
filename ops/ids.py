"""What an SQS message id may look like where the operator's tools put one into a URL,
a form or a printed command.

SQS assigns message ids as UUIDs (36 characters: hex digits and hyphens); the job ids of
job_history are those ids, or the `messageId` of a hand-made event (`make invoke`, tests).
A dead letter's job id comes from its `matchstats.sourceMessageId` attribute, which
whoever can send to the dead-letter queue sets to anything; only ids of this shape are
linked or acted on, anything else is only shown (escaped)."""

from __future__ import annotations

import re

# Letters, digits, hyphens and underscores, up to 128: every id SQS or our events use,
# and never a path separator, dot, colon, quote, space or markup character.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# Error kinds are our own snake_case names (matchstats.errors, RETRIES_EXHAUSTED).
_ERROR_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")


def is_message_id(value: object) -> bool:
    """Whether `value` is a string shaped like a message id (see the module's text)."""
    return isinstance(value, str) and _MESSAGE_ID.fullmatch(value) is not None


def is_error_kind(value: object) -> bool:
    """Whether `value` is shaped like one of our error kinds (snake_case, up to 64)."""
    return isinstance(value, str) and _ERROR_KIND.fullmatch(value) is not None
