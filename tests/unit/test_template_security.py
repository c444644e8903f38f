"""The security rules template.yaml must keep (tests/unit/template_security/, one module a
subject), as checks that `make test` runs: each rule passes on the real template and catches
a violation planted in a copy of it."""

from __future__ import annotations

import copy

import pytest

from devstack.template import resources_of_type
from tests.unit.template_reading import (
    Template,
    deployed_environment,
    function_resources,
    iam_statements,
)
from tests.unit.template_security import Plant, Rule, credentials, encryption, events, iam, logs

RULES: dict[str, Rule] = {
    "wildcard permissions": iam.wildcard_permissions,
    "unencrypted queues": encryption.unencrypted_queues,
    "cron secret in plain sight": credentials.cron_secret_in_plain_sight,
    "database credentials outside Secrets Manager": (
        credentials.database_credentials_outside_secrets_manager
    ),
    "queue access beyond its own": iam.queue_access_beyond_its_own,
    "caller's data in the logs": logs.callers_data_in_the_logs,
    events.RULE: events.events_beyond_the_default_bus,
}
VIOLATIONS = [
    *iam.VIOLATIONS,
    *encryption.VIOLATIONS,
    *credentials.VIOLATIONS,
    *logs.VIOLATIONS,
    *events.VIOLATIONS,
]


# --- the template keeps every rule -------------------------------------------------------


@pytest.mark.parametrize("rule", RULES.values(), ids=RULES.keys())
def test_the_template_keeps_the_security_rule(template: Template, rule: Rule) -> None:
    # Given template.yaml as CloudFormation reads it
    # When the rule looks for violations
    problems = rule(template)

    # Then there are none
    assert problems == []


def test_the_checks_see_what_they_check(template: Template) -> None:
    # Given the template, When counting what the rules inspect
    statements = list(iam_statements(template["Resources"]))
    queues = resources_of_type(template, "AWS::SQS::Queue")
    variables = {
        name for f in function_resources(template) for name in deployed_environment(template, f)
    }

    # Then they have something to inspect: roles, five queues, the secret variables
    assert len(statements) >= 8
    assert len(queues) == 5
    assert set(iam.ROLE_QUEUE_ACCESS) == set(resources_of_type(template, "AWS::IAM::Role"))
    assert {"DB_SECRET_ARN", "CRON_SECRET_ARN", "CRON_SECRET"} <= variables


# --- and each rule catches a violation ------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_name", "plant"),
    [pytest.param(rule, plant, id=f"{rule}: {label}") for rule, label, plant in VIOLATIONS],
)
def test_each_rule_catches_a_planted_violation(
    template: Template, rule_name: str, plant: Plant
) -> None:
    # Given a copy of the template with one violation planted
    broken = copy.deepcopy(template)
    plant(broken)

    # When the rule checks the copy
    problems = RULES[rule_name](broken)

    # Then it reports the violation
    assert problems, f"{rule_name} missed the planted violation"
