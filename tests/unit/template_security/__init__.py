"""The security rules template.yaml must keep, one module a subject: IAM (iam), encryption
at rest (encryption), the cron secret and the database credentials (credentials), what the
API logs of its callers (logs), and where the bundle may publish events (events). checkov
(tests/unit/test_template_scanner.py) cannot know any of these: they depend on which queue,
secret or variable is whose.

Each rule is a function returning the problems it finds, and each module's VIOLATIONS plant
one violation of a rule in a copy of the template, so that tests/unit/test_template_security.py
shows every rule both to pass on the real template and to catch what it is for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.unit.template_reading import Template

Rule = Callable[[Template], list[str]]
Plant = Callable[[Template], None]
# (rule name, what is planted, how)
Violation = tuple[str, str, Plant]


def points_role_statements(template: Template) -> list[dict[str, Any]]:
    """The statements of CalculatePointsRole's policy, to plant a violation in."""
    policies = template["Resources"]["CalculatePointsRole"]["Properties"]["Policies"]
    statements: list[dict[str, Any]] = policies[0]["PolicyDocument"]["Statement"]
    return statements
