"""Finding PgBouncer: where it is absent, the tests that need it are skipped with a reason
that says how to install it (devstack.pgbouncer)."""

from __future__ import annotations

import pytest

from devstack.pgbouncer import PGBOUNCER_BIN_ENV, PgBouncerNotInstalledError, pgbouncer_binary


def test_no_executable_is_an_error_that_says_how_to_install_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a machine whose PgBouncer (named by the override) does not exist
    monkeypatch.setenv(PGBOUNCER_BIN_ENV, "/nonexistent/pgbouncer")

    # When the tests look for it
    with pytest.raises(PgBouncerNotInstalledError) as missing:
        pgbouncer_binary()

    # Then the error names where it looked and how to install it
    assert "/nonexistent/pgbouncer" in str(missing.value)
    assert "apt-get install pgbouncer" in str(missing.value)
