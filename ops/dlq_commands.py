"""The `matchstats dlq` commands (show, redrive, discard): each calls ops.dlq or
ops.redrive and prints plain text, as the other commands in ops/commands.py do."""

from __future__ import annotations

import sys
import time
from collections import Counter

from ops import dlq, redrive
from ops.commands import EXIT_OK, EXIT_USAGE, error
from ops.context import Context
from ops.render import ProgressBar, duration, printable, shorten, table
from ops.settings import DEAD_LETTER_PAIRS


def dlq_show(ctx: Context) -> int:
    pair = DEAD_LETTER_PAIRS[ctx.args.queue]
    url = ctx.settings.queue_url(pair.dead_letter)
    result = dlq.show(ctx.queues, url, limit=ctx.args.limit)
    if not result.messages:
        print(f"{pair.dead_letter.value} is empty")
        return EXIT_OK
    now = time.time()
    print(
        table(
            (
                "message id",
                "job (source message id)",
                "sent",
                "receives",
                "source receives",
                "kind",
                "body",
                "reason",
            ),
            [
                (
                    m.message_id,
                    m.source_message_id,
                    f"{duration(now - m.sent_at.timestamp())} ago" if m.sent_at else None,
                    m.receive_count,
                    m.source_receive_count,
                    m.kind,
                    shorten(m.body, 60),
                    m.reason or "none attached: moved by SQS after repeated failures",
                )
                for m in result.messages
            ],
        )
    )
    print(
        f"{len(result.messages)} shown of about {result.approximate_total} in"
        f" {pair.dead_letter.value}; each was received to be read (SQS cannot peek),"
        " which added one to its receive count, and is visible again"
    )
    return EXIT_OK


def dlq_redrive(ctx: Context) -> int:
    pair = DEAD_LETTER_PAIRS[ctx.args.queue]
    dead_letter_url = ctx.settings.queue_url(pair.dead_letter)
    source_url = ctx.settings.queue_url(pair.source)
    method = redrive.RedriveMethod(ctx.args.method)
    selection = _selection(ctx)
    if selection is not None:
        if method is redrive.RedriveMethod.MOVE_TASK or ctx.args.limit is not None:
            return error(
                "--kind and --id move the messages they select by copy; leave out --method"
                " move-task and --limit",
                EXIT_USAGE,
            )
        moved = dlq.redrive_selected(ctx.queues, dead_letter_url, source_url, selection)
        print(
            f"moved {moved.done} of {len(moved.selected)} message(s)"
            f" {printable(selection.describe())}"
            f" from {pair.dead_letter.value} to {pair.source.value} (copy)"
        )
        if moved.left_behind:
            return error(
                f"{moved.left_behind} message(s) were copied but could not be deleted from"
                f" {pair.dead_letter.value}; the next redrive sends them again"
            )
        return EXIT_OK
    if method is redrive.RedriveMethod.MOVE_TASK and ctx.args.limit is not None:
        return error("--limit needs --method copy or auto: a move task moves them all", EXIT_USAGE)
    bar = ProgressBar(f"{pair.dead_letter.value} -> {pair.source.value}")
    try:
        result = redrive.redrive(
            ctx.queues,
            dead_letter_url,
            source_url,
            limit=ctx.args.limit,
            method=method,
            progress=bar.update,
            notify=lambda text: print(f"matchstats: {printable(text)}", file=sys.stderr),
            hold_s=ctx.args.hold,
        )
    finally:
        bar.finish()
    if result.total == 0:
        print(f"{pair.dead_letter.value} is empty: nothing to move")
        return EXIT_OK
    print(
        f"moved {result.moved} of {result.total} message(s) from {pair.dead_letter.value}"
        f" to {pair.source.value} ({result.method.value})"
    )
    if result.left_behind:
        return error(
            f"{result.left_behind} message(s) were copied but could not be deleted from"
            f" {pair.dead_letter.value}; they reappear there in {ctx.args.hold} s and the next"
            " redrive sends them again (a duplicate the consumers tolerate)"
        )
    return EXIT_OK


def _selection(ctx: Context) -> dlq.Selection | None:
    kind: str | None = getattr(ctx.args, "kind", None)
    message_id: str | None = getattr(ctx.args, "id", None)
    if kind is None and message_id is None:
        return None
    return dlq.Selection(kind=kind, message_id=message_id)


def dlq_discard(ctx: Context) -> int:
    pair = DEAD_LETTER_PAIRS[ctx.args.queue]
    url = ctx.settings.queue_url(pair.dead_letter)
    selection = _selection(ctx) or dlq.Selection()
    chosen = dlq.select(ctx.queues, url, selection)
    if not chosen:
        print(
            f"no message {printable(selection.describe())} in {pair.dead_letter.value}:"
            " nothing to discard"
        )
        return EXIT_OK
    kinds = Counter(letter.kind for letter in chosen)
    # A kind is whatever the message's matchstats.errorKind says: its sender may forge it.
    summary = ", ".join(f"{count} {printable(kind)}" for kind, count in sorted(kinds.items()))
    print(
        f"{len(chosen)} message(s) {printable(selection.describe())} in"
        f" {pair.dead_letter.value}: {summary}"
    )
    if not ctx.args.yes:
        if not sys.stdin.isatty():
            return error(
                "not discarding without confirmation: run it at a terminal, or add --yes",
                EXIT_USAGE,
            )
        answer = input("Discard them for good? This cannot be undone. [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            print("nothing discarded")
            return EXIT_OK
    # Exactly the messages listed: one that arrives meanwhile was not confirmed.
    confirmed = dlq.Selection(confirmed_ids=frozenset(letter.message_id for letter in chosen))
    result = dlq.discard(ctx.queues, url, confirmed)
    print(f"discarded {result.done} of {len(chosen)} message(s) from {pair.dead_letter.value}")
    if result.done < len(chosen):
        return error(
            f"{len(chosen) - result.done} message(s) could not be discarded (received"
            " meanwhile by another reader, or the delete failed); run it again"
        )
    return EXIT_OK
