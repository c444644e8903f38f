"""Plain-text output of the `matchstats` command: aligned tables, ages, a progress bar."""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

MISSING = "-"
# Characters that reorder the text shown around them ("Trojan Source", CVE-2021-42574):
# the bidirectional embeddings, overrides, isolates and marks (Unicode category Cf).
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


# Cc: C0, DEL and C1 controls, so ESC (or the 8-bit CSI) cannot start an escape sequence
# that recolours, retitles or clears the screen or writes the clipboard. Cs: lone
# surrogates, which is how Python holds argv bytes that are not UTF-8 (surrogateescape);
# written as they are, they fail the write with UnicodeEncodeError.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cs"})


def printable(text: str) -> str:
    """`text` safe to write to an operator's terminal: each control character, lone
    surrogate and bidirectional control is written as its Python escape (`\\x1b`,
    `\\udcff`, `\\u202e`). Message bodies, reasons, subjects and error kinds come from
    whoever sent the message, ids and kinds from whoever typed the command; everything
    else passes unchanged."""
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if char in _BIDI_CONTROLS or unicodedata.category(char) in _ESCAPED_CATEGORIES
        else char
        for char in text
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> str:
    """Columns padded to their widest cell; the last column is not padded, so a long
    reason or error runs on instead of widening every line."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max([len(header)] + [len(row[index]) for row in cells])
        for index, header in enumerate(headers)
    ]
    lines = []
    for row in [list(headers), *cells]:
        padded = [value.ljust(width) for value, width in zip(row[:-1], widths[:-1], strict=True)]
        lines.append((indent + "  ".join([*padded, row[-1]])).rstrip())
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return timestamp(value)
    # One line per row: a multi-line reason or body is folded.
    return printable(" ".join(str(value).split()))


def timestamp(moment: datetime | None) -> str:
    if moment is None:
        return MISSING
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """3 ms, 4.2 s, 5m 10s, 2h 3m, 4d 1h."""
    if seconds is None:
        return MISSING
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    for unit, size, sub_unit, sub_size in (
        ("d", 86_400, "h", 3_600),
        ("h", 3_600, "m", 60),
        ("m", 60, "s", 1),
    ):
        if whole >= size:
            return f"{whole // size}{unit} {(whole % size) // sub_size}{sub_unit}"
    return f"{whole} s"  # unreachable: whole >= 60 here


def age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return MISSING
    return duration(max(0.0, (now - moment).total_seconds()))


def shorten(text: str | None, width: int) -> str | None:
    if text is None:
        return None
    text = printable(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 3] + "..."


class ProgressBar:
    """`label [#####.....] 50/100` on one line of stderr, redrawn in place."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._width = width
        self._drawn = False

    def update(self, done: int, total: int) -> None:
        filled = self._width if total <= 0 else min(self._width, self._width * done // total)
        bar = "#" * filled + "." * (self._width - filled)
        self._stream.write(f"\r{self._label} [{bar}] {done}/{total}")
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False
