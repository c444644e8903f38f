"""Fixtures the unit tier shares."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from devstack.template import load_template
from tests.unit.template_reading import Template


@pytest.fixture(scope="module")
def template() -> Template:
    """template.yaml as CloudFormation reads it (short tags in their long form); a test
    that changes it works on a copy."""
    return load_template()


@pytest.fixture
def log_output(capsys: pytest.CaptureFixture[str]) -> Iterator[io.StringIO]:
    """Every log record of the function, of Powertools and of every other library, at
    DEBUG (tests.api_support.every_log_line); after the test, what went to stdout and
    stderr (metrics, say) as well."""
    from tests.api_support import every_log_line  # imports the API handler: only here

    with every_log_line() as buffer:
        yield buffer
    captured = capsys.readouterr()
    buffer.write(captured.out + captured.err)
