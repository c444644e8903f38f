"""EventBridge: the bundle publishes StandingsRefreshed (SPEC section 6b) and nothing else,
so the template grants events:PutEvents to RefreshViewsRole on the account's default bus
and no other events action, bus or role. A grant on "*" or on another bus would let a
compromised function put events wherever the account's rules listen."""

from __future__ import annotations

from typing import Any

from devstack.template import resources_of_type
from tests.unit.template_reading import Template, as_list, iam_statements
from tests.unit.template_security import Plant, Violation

PUBLISHER_ROLE = "RefreshViewsRole"
_BUS = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/"
DEFAULT_BUS = {"Fn::Sub": _BUS + "default"}
GRANT = ("events:PutEvents", repr(DEFAULT_BUS))


def events_beyond_the_default_bus(template: Template) -> list[str]:
    problems = []
    granted = set()
    for role_id, role in resources_of_type(template, "AWS::IAM::Role").items():
        for where, statement in iam_statements(role, role_id):
            for action in as_list(statement.get("Action", [])):
                if not str(action).startswith("events:"):
                    continue
                for resource in as_list(statement.get("Resource", [])):
                    grant = (action, repr(resource))
                    if role_id == PUBLISHER_ROLE and grant == GRANT:
                        granted.add(grant)
                    else:
                        problems.append(f"{where}: {action} on {resource!r}")
    if GRANT not in granted:
        problems.append(f"{PUBLISHER_ROLE}: no events:PutEvents on the default bus")
    return problems


# --- planted violations ------------------------------------------------------------------


def _publisher_statement(template: Template) -> dict[str, Any]:
    policies = template["Resources"][PUBLISHER_ROLE]["Properties"]["Policies"]
    statements: list[dict[str, Any]] = policies[0]["PolicyDocument"]["Statement"]
    return next(s for s in statements if s.get("Action") == "events:PutEvents")


def _plant_resource(resource: Any) -> Plant:
    def plant(template: Template) -> None:
        _publisher_statement(template)["Resource"] = resource

    return plant


def _plant_action(action: str) -> Plant:
    def plant(template: Template) -> None:
        _publisher_statement(template)["Action"] = ["events:PutEvents", action]

    return plant


def _plant_other_role(template: Template) -> None:
    policies = template["Resources"]["RefreshApiRole"]["Properties"]["Policies"]
    policies[0]["PolicyDocument"]["Statement"].append(dict(_publisher_statement(template)))


def _plant_no_grant(template: Template) -> None:
    policies = template["Resources"][PUBLISHER_ROLE]["Properties"]["Policies"]
    document = policies[0]["PolicyDocument"]
    document["Statement"] = [
        s for s in document["Statement"] if s is not _publisher_statement(template)
    ]


RULE = "events beyond the default bus"
VIOLATIONS: list[Violation] = [
    (RULE, "every bus", _plant_resource("*")),
    (
        RULE,
        "another bus",
        _plant_resource({"Fn::Sub": _BUS + "app"}),
    ),
    (RULE, "default bus and another", _plant_resource([DEFAULT_BUS, "*"])),
    (RULE, "another action", _plant_action("events:PutRule")),
    (RULE, "another role publishes", _plant_other_role),
    (RULE, "no grant to publish", _plant_no_grant),
]
