"""What the `matchstats` command writes to the operator's terminal (ops.render)."""

from __future__ import annotations

from ops.render import printable


def test_controls_bidi_and_lone_surrogates_are_escaped_and_the_rest_kept() -> None:
    # Given text holding ESC, the 8-bit CSI, a right-to-left override, argv bytes that
    # were not UTF-8 (held as lone surrogates), and ordinary non-ASCII letters
    text = "kind\x1b[2J\x9b2J\u202e" + b"\xff".decode("utf-8", "surrogateescape") + " é€"

    # When it is made printable
    shown = printable(text)

    # Then each of the first four is written as its escape, and the result encodes as UTF-8
    assert shown == "kind\\x1b[2J\\x9b2J\\u202e\\udcff é€"
    assert shown.encode("utf-8")
