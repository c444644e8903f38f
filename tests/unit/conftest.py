"""Fixtures the unit tier shares."""

from __future__ import annotations

import pytest

from devstack.template import load_template
from tests.unit.template_reading import Template


@pytest.fixture(scope="module")
def template() -> Template:
    """template.yaml as CloudFormation reads it (short tags in their long form); a test
    that changes it works on a copy."""
    return load_template()
