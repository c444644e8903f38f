"""IAM: no statement grants a wildcard action ("*", "sqs:*", "sqs:Send*") or uses NotAction,
no function gets SAM-generated policies beside its explicit role, and each role reaches only
its own queues (and Scheduler's role only its one function): ROLE_QUEUE_ACCESS is the whole
of what may be granted on SQS and Lambda."""

from __future__ import annotations

from typing import Any

from devstack.template import resources_of_type
from tests.unit.template_reading import (
    Template,
    as_list,
    function_resources,
    iam_statements,
    scalars,
)
from tests.unit.template_security import Plant, Violation, points_role_statements

# A role may attach only these AWS managed policies: each names its actions.
ALLOWED_MANAGED_POLICIES = {
    "service-role/AWSLambdaBasicExecutionRole",
    "service-role/AWSLambdaVPCAccessExecutionRole",
    "AWSXrayWriteOnlyAccess",
}
_CONSUME = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
_CONSUME_WITH_BACKOFF = (*_CONSUME, "sqs:ChangeMessageVisibility")
# Role -> every (action, resource logical id) it may hold on SQS queues and functions.
ROLE_QUEUE_ACCESS: dict[str, set[tuple[str, str]]] = {
    "CalculatePointsRole": {
        *((action, "PointsQueue") for action in _CONSUME_WITH_BACKOFF),
        ("sqs:SendMessage", "PointsDeadLetterQueue"),
        ("sqs:SendMessage", "RefreshQueue"),
    },
    "RefreshViewsRole": {
        *((action, "RefreshQueue") for action in _CONSUME_WITH_BACKOFF),
        ("sqs:SendMessage", "RefreshDeadLetterQueue"),
    },
    "ScheduledRefreshRole": {
        ("sqs:SendMessage", "RefreshQueue"),
        ("sqs:SendMessage", "ScheduleDeadLetterQueue"),
    },
    "RefreshApiRole": {("sqs:SendMessage", "RefreshQueue")},
    "RefreshScheduleRole": {
        ("lambda:InvokeFunction", "ScheduledRefreshFunction"),
        ("sqs:SendMessage", "ScheduleDeadLetterQueue"),
    },
}


# --- the rules ---------------------------------------------------------------------------


def wildcard_permissions(template: Template) -> list[str]:
    return [
        *_actions_not_named(template),
        *_managed_policies_off_the_list(template),
        *_policies_sam_would_write(template),
    ]


def _actions_not_named(template: Template) -> list[str]:
    problems = []
    for where, statement in iam_statements(template.get("Resources", {})):
        if "NotAction" in statement:
            problems.append(f"{where}: NotAction grants everything it does not name")
        for action in as_list(statement.get("Action", [])):
            if not isinstance(action, str):
                problems.append(f"{where}: action {action!r} is not a literal name")
            elif "*" in action or "?" in action:
                problems.append(f"{where}: wildcard action {action!r}")
    return problems


def _managed_policies_off_the_list(template: Template) -> list[str]:
    problems = []
    for role_id, role in resources_of_type(template, "AWS::IAM::Role").items():
        for arn in role.get("Properties", {}).get("ManagedPolicyArns", []):
            for _, text in scalars(arn):
                name = text.split(":policy/", 1)[-1]
                if ":policy/" in text and name not in ALLOWED_MANAGED_POLICIES:
                    problems.append(f"{role_id}: managed policy {name} is not on the allow list")
    return problems


def _policies_sam_would_write(template: Template) -> list[str]:
    problems = []
    for function_id, function in function_resources(template).items():
        properties = function.get("Properties", {})
        if "Policies" in properties:
            problems.append(f"{function_id}: SAM Policies beside the explicit role")
        if "Role" not in properties:
            problems.append(f"{function_id}: no explicit role (SAM would generate a broad one)")
    return problems


def queue_access_beyond_its_own(template: Template) -> list[str]:
    problems = []
    resources = template.get("Resources", {})
    for role_id, role in resources_of_type(template, "AWS::IAM::Role").items():
        allowed = ROLE_QUEUE_ACCESS.get(role_id, set())
        for where, statement in iam_statements(role, role_id):
            actions = [
                a
                for a in as_list(statement.get("Action", []))
                if str(a).startswith(("sqs:", "lambda:"))
            ]
            for action in actions:
                for resource in as_list(statement.get("Resource", [])):
                    target = (
                        resource.get("Fn::GetAtt", [None])[0]
                        if isinstance(resource, dict)
                        else None
                    )
                    if target not in resources:
                        problems.append(
                            f"{where}: {action} on {resource!r}, not a resource of this stack"
                        )
                    elif (action, target) not in allowed:
                        problems.append(f"{where}: {action} on {target} is not {role_id}'s to have")
    return problems


# --- planted violations ------------------------------------------------------------------


def _plant_action(action: Any) -> Plant:
    def plant(template: Template) -> None:
        points_role_statements(template)[0]["Action"] = action

    return plant


def _plant_not_action(template: Template) -> None:
    statement = points_role_statements(template)[0]
    statement["NotAction"] = statement.pop("Action")


def _plant_managed_policy(template: Template) -> None:
    role = template["Resources"]["RefreshApiRole"]["Properties"]
    role["ManagedPolicyArns"].append(
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AdminAccess"}
    )


def _plant_function_policies(template: Template) -> None:
    properties = template["Resources"]["RefreshApiFunction"]["Properties"]
    properties["Policies"] = ["AmazonSQSFullAccess"]


def _plant_grant(role_id: str, action: str, resource_id: str) -> Plant:
    def plant(template: Template) -> None:
        role = template["Resources"][role_id]["Properties"]
        role["Policies"][0]["PolicyDocument"]["Statement"].append(
            {"Effect": "Allow", "Action": action, "Resource": {"Fn::GetAtt": [resource_id, "Arn"]}}
        )

    return plant


def _plant_queue_by_name(template: Template) -> None:
    statement = points_role_statements(template)[1]
    statement["Resource"] = {"Fn::Sub": "arn:aws:sqs:${AWS::Region}:${AWS::AccountId}:*"}


VIOLATIONS: list[Violation] = [
    ("wildcard permissions", "star", _plant_action("*")),
    ("wildcard permissions", "service star", _plant_action("sqs:*")),
    ("wildcard permissions", "prefix star in a list", _plant_action(["sqs:Send*"])),
    ("wildcard permissions", "NotAction", _plant_not_action),
    ("wildcard permissions", "broad managed policy", _plant_managed_policy),
    ("wildcard permissions", "SAM policies", _plant_function_policies),
    (
        "queue access beyond its own",
        "API sends points",
        _plant_grant("RefreshApiRole", "sqs:SendMessage", "PointsQueue"),
    ),
    (
        "queue access beyond its own",
        "refresh consumes points",
        _plant_grant("RefreshViewsRole", "sqs:ReceiveMessage", "PointsQueue"),
    ),
    (
        "queue access beyond its own",
        "scheduler invokes another function",
        _plant_grant("RefreshScheduleRole", "lambda:InvokeFunction", "RefreshViewsFunction"),
    ),
    ("queue access beyond its own", "every queue by ARN pattern", _plant_queue_by_name),
]
