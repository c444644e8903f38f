"""The console over the operator's local stack, through Flask's test client."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from ops.aws import Aws
from ops.console.app import create_app
from ops.console.data import ConsoleData
from ops.context import Context
from tests.integration.conftest import OperatorStack
from tests.integration.console.steps import CRON_SECRET, HOST, TOKEN
from tests.template_queues import TemplateQueues


@pytest.fixture
def stack(
    operator_stack: OperatorStack, monkeypatch: pytest.MonkeyPatch
) -> tuple[TemplateQueues, dict[str, str]]:
    """The operator's local stack, with a cron secret the console must never show."""
    monkeypatch.setenv("CRON_SECRET", CRON_SECRET)
    return operator_stack.queues, {**operator_stack.env, "CRON_SECRET": CRON_SECRET}


@pytest.fixture
def console(stack: tuple[TemplateQueues, dict[str, str]]) -> Iterator[FlaskClient]:
    _, env = stack
    context = Context(argparse.Namespace(stack=None), Aws(local=env), env)
    data = ConsoleData(context)
    app = create_app(data, token=TOKEN, allowed_hosts={HOST})
    client = app.test_client()
    yield client
    data.close()
