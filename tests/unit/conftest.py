"""Fixtures the unit tier shares."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from devstack.template import load_template
from matchstats.observability import logger
from tests.unit.template_reading import Template


@pytest.fixture(scope="module")
def template() -> Template:
    """template.yaml as CloudFormation reads it (short tags in their long form); a test
    that changes it works on a copy."""
    return load_template()


@pytest.fixture
def log_output(capsys: pytest.CaptureFixture[str]) -> Iterator[io.StringIO]:
    """Every log record of the function and of Powertools, at DEBUG, formatted as the
    function's logger formats it (extra keys and exceptions included)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    watched = [logging.getLogger("matchstats"), logging.getLogger("aws_lambda_powertools")]
    levels = [watched_logger.level for watched_logger in watched]
    root.addHandler(handler)
    for watched_logger in watched:
        watched_logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        for watched_logger, level in zip(watched, levels, strict=True):
            watched_logger.setLevel(level)
    captured = capsys.readouterr()
    buffer.write(captured.out + captured.err)
