"""The local stack as the `matchstats` command's tests use it."""

from __future__ import annotations

import pytest

from tests.integration.conftest import OperatorStack
from tests.template_queues import TemplateQueues


@pytest.fixture
def stack(operator_stack: OperatorStack) -> TemplateQueues:
    """Empty tables, fresh queues and the operator's environment; its queues."""
    return operator_stack.queues
