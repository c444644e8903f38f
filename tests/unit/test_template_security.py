"""The security rules template.yaml must keep, as checks that `make test` runs.

- No IAM statement grants a wildcard action ("*", "sqs:*", "sqs:Send*") or uses
  NotAction, and no function gets SAM-generated policies beside its explicit role.
- Every SQS queue is encrypted at rest (SQS-managed SSE or a KMS key).
- The cron secret is never a value in the template: no parameter default and no
  environment variable holds it; the API function gets the ARN of a generated secret.
- The database credentials come only from Secrets Manager: DB_SECRET_ARN from the
  DbSecretArn parameter, no DATABASE_URL or password variable, and GetSecretValue
  scoped to that one ARN.
- Each role reaches only its own queues (and Scheduler's role only its one function): the
  table ROLE_QUEUE_ACCESS below is the whole of what may be granted on SQS and Lambda.
- Nothing a caller sends is logged: API access logs name only the listed $context
  variables (no header, so never Authorization; no authorizer value but its error), and
  execution logging is OFF or ERROR, never INFO nor full request data.

checkov (tests/unit/test_template_scanner.py) cannot know any of these: they depend on
which queue, secret or variable is whose.

Each rule is a function returning the problems it finds, so the same rule is shown both
to pass on the real template and to catch a violation planted in a copy of it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.template import load_template, resources_of_type

Template = dict[str, Any]
Rule = Callable[[Template], list[str]]

# A role may attach only these AWS managed policies: each names its actions.
ALLOWED_MANAGED_POLICIES = {
    "service-role/AWSLambdaBasicExecutionRole",
    "service-role/AWSLambdaVPCAccessExecutionRole",
    "AWSXrayWriteOnlyAccess",
}
# Names that say "this value is a credential".
SECRET_NAME = re.compile(r"secret|password|passwd|token|credential|api_?key", re.IGNORECASE)
# Values that look like a credential or a connection string with one in it.
SECRET_VALUE = re.compile(
    r"postgres(ql)?://|password=|passwd=|\{\{resolve:secretsmanager|\{\{resolve:ssm-secure"
    r"|local-dev-cron-secret|^[A-Za-z0-9+/_-]{32,}={0,2}$",
    re.IGNORECASE,
)
# Variables that carry a database credential or connection string.
DATABASE_CREDENTIAL_VARIABLES = {
    "DATABASE_URL",
    "DB_PASSWORD",
    "DB_USER",
    "DB_USERNAME",
    "PGPASSWORD",
    "PGUSER",
    "POSTGRES_PASSWORD",
}
# Functions that use the database, and so may read its secret.
DATABASE_FUNCTIONS = {"CalculatePointsFunction", "RefreshViewsFunction"}
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
# The only API Gateway variables an access log may name: none carries a header, a body,
# a credential or a value an authorizer returned.
ACCESS_LOG_VARIABLES = {
    "$context.requestId",
    "$context.extendedRequestId",
    "$context.identity.sourceIp",
    "$context.requestTime",
    "$context.requestTimeEpoch",
    "$context.httpMethod",
    "$context.resourcePath",
    "$context.protocol",
    "$context.status",
    "$context.responseLength",
    "$context.responseLatency",
    "$context.integrationLatency",
    "$context.integration.status",
    "$context.error.responseType",
    "$context.error.messageString",
    "$context.authorizer.error",
    "$context.xrayTraceId",
}
LOG_VARIABLE = re.compile(r"\$[A-Za-z_][\w.]*")
EXECUTION_LOG_LEVELS = {"OFF", "ERROR"}


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


# --- walking the template --------------------------------------------------------------


def iam_statements(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, statement) for every IAM policy statement anywhere under `node`."""
    if isinstance(node, dict):
        if "Effect" in node and ({"Action", "NotAction"} & node.keys()):
            yield where, node
        for key, value in node.items():
            yield from iam_statements(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from iam_statements(item, f"{where}[{index}]")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def functions(template: Template) -> dict[str, dict[str, Any]]:
    return resources_of_type(template, "AWS::Serverless::Function")


def environment(template: Template, function_id: str) -> dict[str, Any]:
    """The function's variables as deployed: Globals, overridden by its own."""
    globals_env = template.get("Globals", {}).get("Function", {}).get("Environment", {})
    own = functions(template)[function_id].get("Properties", {}).get("Environment", {})
    return {**globals_env.get("Variables", {}), **own.get("Variables", {})}


def role_of(template: Template, function_id: str) -> dict[str, Any] | None:
    role = functions(template)[function_id].get("Properties", {}).get("Role")
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        resource: dict[str, Any] = template["Resources"][role["Fn::GetAtt"][0]]
        return resource
    return None


def scalars(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(path, text) for every string anywhere under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from scalars(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from scalars(item, f"{where}[{index}]")
    elif isinstance(node, str):
        yield where, node


# --- the rules ---------------------------------------------------------------------------


def wildcard_permissions(template: Template) -> list[str]:
    problems = []
    for where, statement in iam_statements(template.get("Resources", {})):
        if "NotAction" in statement:
            problems.append(f"{where}: NotAction grants everything it does not name")
        for action in as_list(statement.get("Action", [])):
            if not isinstance(action, str):
                problems.append(f"{where}: action {action!r} is not a literal name")
            elif "*" in action or "?" in action:
                problems.append(f"{where}: wildcard action {action!r}")
    for role_id, role in resources_of_type(template, "AWS::IAM::Role").items():
        for arn in role.get("Properties", {}).get("ManagedPolicyArns", []):
            for _, text in scalars(arn):
                name = text.split(":policy/", 1)[-1]
                if ":policy/" in text and name not in ALLOWED_MANAGED_POLICIES:
                    problems.append(f"{role_id}: managed policy {name} is not on the allow list")
    for function_id, function in functions(template).items():
        properties = function.get("Properties", {})
        if "Policies" in properties:
            problems.append(f"{function_id}: SAM Policies beside the explicit role")
        if "Role" not in properties:
            problems.append(f"{function_id}: no explicit role (SAM would generate a broad one)")
    return problems


def unencrypted_queues(template: Template) -> list[str]:
    problems = []
    queues = resources_of_type(template, "AWS::SQS::Queue")
    for queue_id, queue in queues.items():
        properties = queue.get("Properties", {})
        managed = properties.get("SqsManagedSseEnabled") in (True, "true", "True")
        if not managed and not properties.get("KmsMasterKeyId"):
            problems.append(f"{queue_id}: neither SqsManagedSseEnabled nor KmsMasterKeyId")
    if not queues:
        problems.append("no queues found")
    return problems


def cron_secret_in_plain_sight(template: Template) -> list[str]:
    problems = []
    for name, parameter in template.get("Parameters", {}).items():
        default = parameter.get("Default")
        if default in (None, ""):
            continue
        if parameter.get("NoEcho") in (True, "true"):
            problems.append(f"parameter {name}: a NoEcho parameter with a default")
        if SECRET_NAME.search(name) and not name.endswith("Arn"):
            problems.append(f"parameter {name}: a secret with a default")
        if isinstance(default, str) and SECRET_VALUE.search(default):
            problems.append(f"parameter {name}: its default looks like a secret")
    for function_id in functions(template):
        for variable, value in environment(template, function_id).items():
            if variable == "CRON_SECRET":
                # Declared empty so that `sam local invoke --env-vars` may set it.
                if value != "":
                    problems.append(f"{function_id}: CRON_SECRET is {value!r}, not empty")
                continue
            if variable == "CRON_SECRET_ARN":
                target = value.get("Ref") if isinstance(value, dict) else None
                resource = template["Resources"].get(target or "", {})
                if resource.get("Type") != "AWS::SecretsManager::Secret":
                    problems.append(f"{function_id}: CRON_SECRET_ARN is not !Ref a secret")
                continue
            for where, text in scalars(value, f"{function_id}.{variable}"):
                if SECRET_VALUE.search(text):
                    problems.append(f"{where}: looks like a secret value")
            if SECRET_NAME.search(variable) and not variable.endswith("_ARN") and value != "":
                problems.append(f"{function_id}.{variable}: a secret held in the environment")
    for secret_id, secret in resources_of_type(template, "AWS::SecretsManager::Secret").items():
        properties = secret.get("Properties", {})
        if "SecretString" in properties:
            problems.append(f"{secret_id}: a SecretString written in the template")
        if "GenerateSecretString" not in properties:
            problems.append(f"{secret_id}: not generated by Secrets Manager")
    return problems


def database_credentials_outside_secrets_manager(template: Template) -> list[str]:
    problems = []
    parameter = template.get("Parameters", {}).get("DbSecretArn")
    if parameter is None:
        problems.append("no DbSecretArn parameter")
    elif parameter.get("Default") not in (None, ""):
        problems.append("DbSecretArn has a default: every deployment must name its secret")
    elif ":secretsmanager:" not in parameter.get("AllowedPattern", ""):
        problems.append("DbSecretArn is not constrained to a Secrets Manager ARN")
    for function_id in functions(template):
        variables = environment(template, function_id)
        for variable in DATABASE_CREDENTIAL_VARIABLES & variables.keys():
            problems.append(f"{function_id}: {variable} in the deployed environment")
        if function_id in DATABASE_FUNCTIONS and variables.get("DB_SECRET_ARN") != {
            "Ref": "DbSecretArn"
        }:
            problems.append(f"{function_id}: DB_SECRET_ARN is not !Ref DbSecretArn")
    for where, statement in iam_statements(template.get("Resources", {})):
        if "secretsmanager:GetSecretValue" not in as_list(statement.get("Action", [])):
            continue
        resources = as_list(statement.get("Resource", []))
        allowed = [{"Ref": "DbSecretArn"}, {"Ref": "CronSecret"}]
        if statement.get("Effect") == "Allow" and any(r not in allowed for r in resources):
            problems.append(f"{where}: GetSecretValue on {resources}, not one named secret")
    for function_id in functions(template):
        role = role_of(template, function_id)
        reads_db_secret = role is not None and any(
            {"Ref": "DbSecretArn"} in as_list(statement.get("Resource", []))
            for _, statement in iam_statements(role)
        )
        if reads_db_secret and function_id not in DATABASE_FUNCTIONS:
            problems.append(f"{function_id}: may read the database secret but needs no database")
        if function_id in DATABASE_FUNCTIONS and not reads_db_secret:
            problems.append(f"{function_id}: cannot read the database secret it needs")
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


def callers_data_in_the_logs(template: Template) -> list[str]:
    problems = []
    for api_id, api in resources_of_type(template, "AWS::Serverless::Api").items():
        properties = api.get("Properties", {})
        log_format = str(properties.get("AccessLogSetting", {}).get("Format", ""))
        if not log_format:
            problems.append(f"{api_id}: no access log format")
        for variable in sorted(set(LOG_VARIABLE.findall(log_format)) - ACCESS_LOG_VARIABLES):
            problems.append(f"{api_id}: access log names {variable}")
        if re.search(r"header|authorization", log_format, re.IGNORECASE):
            problems.append(f"{api_id}: access log names a header")
        for settings in properties.get("MethodSettings", []):
            level = settings.get("LoggingLevel")
            if level not in EXECUTION_LOG_LEVELS:
                problems.append(f"{api_id}: execution logging at {level!r}, not OFF or ERROR")
            if settings.get("DataTraceEnabled") is not False:
                problems.append(f"{api_id}: full request logging is not switched off")
    if not resources_of_type(template, "AWS::Serverless::Api"):
        problems.append("no API found")
    return problems


RULES: dict[str, Rule] = {
    "wildcard permissions": wildcard_permissions,
    "unencrypted queues": unencrypted_queues,
    "cron secret in plain sight": cron_secret_in_plain_sight,
    "database credentials outside Secrets Manager": database_credentials_outside_secrets_manager,
    "queue access beyond its own": queue_access_beyond_its_own,
    "caller's data in the logs": callers_data_in_the_logs,
}


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
    variables = {name for f in functions(template) for name in environment(template, f)}

    # Then they have something to inspect: roles, five queues, the secret variables
    assert len(statements) >= 8
    assert len(queues) == 5
    assert set(ROLE_QUEUE_ACCESS) == set(resources_of_type(template, "AWS::IAM::Role"))
    assert {"DB_SECRET_ARN", "CRON_SECRET_ARN", "CRON_SECRET"} <= variables


# --- and each rule catches a violation ------------------------------------------------------


def _points_role_statements(template: Template) -> list[dict[str, Any]]:
    policies = template["Resources"]["CalculatePointsRole"]["Properties"]["Policies"]
    statements: list[dict[str, Any]] = policies[0]["PolicyDocument"]["Statement"]
    return statements


def _plant_action(action: Any) -> Callable[[Template], None]:
    def plant(template: Template) -> None:
        _points_role_statements(template)[0]["Action"] = action

    return plant


def _plant_not_action(template: Template) -> None:
    statement = _points_role_statements(template)[0]
    statement["NotAction"] = statement.pop("Action")


def _plant_managed_policy(template: Template) -> None:
    role = template["Resources"]["RefreshApiRole"]["Properties"]
    role["ManagedPolicyArns"].append(
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AdminAccess"}
    )


def _plant_function_policies(template: Template) -> None:
    properties = template["Resources"]["RefreshApiFunction"]["Properties"]
    properties["Policies"] = ["AmazonSQSFullAccess"]


def _plant_unencrypted_queue(template: Template) -> None:
    del template["Resources"]["RefreshDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"]


def _plant_cron_secret_parameter(template: Template) -> None:
    template["Parameters"]["CronSecretValue"] = {"Type": "String", "Default": "hunter2-hunter2"}
    variables = template["Resources"]["RefreshApiFunction"]["Properties"]["Environment"]
    variables["Variables"]["CRON_SECRET"] = {"Ref": "CronSecretValue"}


def _plant_cron_secret_value(template: Template) -> None:
    variables = template["Resources"]["RefreshApiFunction"]["Properties"]["Environment"]
    variables["Variables"]["CRON_SECRET"] = "local-dev-cron-secret"


def _plant_resolved_secret(template: Template) -> None:
    variables = template["Resources"]["RefreshApiFunction"]["Properties"]["Environment"]
    variables["Variables"]["API_TOKEN"] = "{{resolve:secretsmanager:cron:SecretString}}"


def _plant_noecho_default(template: Template) -> None:
    template["Parameters"]["AdminPassword"] = {
        "Type": "String",
        "NoEcho": True,
        "Default": "changeme",
    }


def _plant_literal_secret(template: Template) -> None:
    properties = template["Resources"]["CronSecret"]["Properties"]
    properties["SecretString"] = "written-down"


def _plant_database_url(template: Template) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    variables["DATABASE_URL"] = "postgresql://app:pw@db.example.com/matchstats"


def _plant_password_variable(template: Template) -> None:
    variables = template["Resources"]["RefreshViewsFunction"]["Properties"]["Environment"]
    variables["Variables"]["PGPASSWORD"] = {"Ref": "DbPassword"}


def _plant_db_secret_default(template: Template) -> None:
    template["Parameters"]["DbSecretArn"]["Default"] = (
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
    )


def _plant_broad_secret_read(template: Template) -> None:
    statement = _points_role_statements(template)[-1]
    statement["Resource"] = {"Fn::Sub": "arn:aws:secretsmanager:${AWS::Region}:*:secret:*"}


def _plant_secret_read_for_the_api(template: Template) -> None:
    role = template["Resources"]["RefreshApiRole"]["Properties"]
    role["Policies"][0]["PolicyDocument"]["Statement"].append(
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": {"Ref": "DbSecretArn"},
        }
    )


def _plant_grant(role_id: str, action: str, resource_id: str) -> Callable[[Template], None]:
    def plant(template: Template) -> None:
        role = template["Resources"][role_id]["Properties"]
        role["Policies"][0]["PolicyDocument"]["Statement"].append(
            {"Effect": "Allow", "Action": action, "Resource": {"Fn::GetAtt": [resource_id, "Arn"]}}
        )

    return plant


def _plant_queue_by_name(template: Template) -> None:
    statement = _points_role_statements(template)[1]
    statement["Resource"] = {"Fn::Sub": "arn:aws:sqs:${AWS::Region}:${AWS::AccountId}:*"}


def _access_log(template: Template) -> dict[str, Any]:
    setting: dict[str, Any] = template["Resources"]["RefreshApi"]["Properties"]["AccessLogSetting"]
    return setting


def _plant_log_variable(variable: str) -> Callable[[Template], None]:
    def plant(template: Template) -> None:
        _access_log(template)["Format"] = _access_log(template)["Format"].replace(
            '"$context.requestId"', f'"$context.requestId", "extra":"{variable}"'
        )

    return plant


def _plant_method_setting(key: str, value: Any) -> Callable[[Template], None]:
    def plant(template: Template) -> None:
        template["Resources"]["RefreshApi"]["Properties"]["MethodSettings"][0][key] = value

    return plant


VIOLATIONS = [
    ("wildcard permissions", "star", _plant_action("*")),
    ("wildcard permissions", "service star", _plant_action("sqs:*")),
    ("wildcard permissions", "prefix star in a list", _plant_action(["sqs:Send*"])),
    ("wildcard permissions", "NotAction", _plant_not_action),
    ("wildcard permissions", "broad managed policy", _plant_managed_policy),
    ("wildcard permissions", "SAM policies", _plant_function_policies),
    ("unencrypted queues", "no SSE", _plant_unencrypted_queue),
    ("cron secret in plain sight", "parameter default", _plant_cron_secret_parameter),
    ("cron secret in plain sight", "env value", _plant_cron_secret_value),
    ("cron secret in plain sight", "dynamic reference", _plant_resolved_secret),
    ("cron secret in plain sight", "NoEcho default", _plant_noecho_default),
    ("cron secret in plain sight", "SecretString", _plant_literal_secret),
    ("database credentials outside Secrets Manager", "DATABASE_URL", _plant_database_url),
    ("database credentials outside Secrets Manager", "PGPASSWORD", _plant_password_variable),
    ("database credentials outside Secrets Manager", "default ARN", _plant_db_secret_default),
    ("database credentials outside Secrets Manager", "any secret", _plant_broad_secret_read),
    (
        "database credentials outside Secrets Manager",
        "API reads DB",
        _plant_secret_read_for_the_api,
    ),
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
    (
        "caller's data in the logs",
        "authorizer value",
        _plant_log_variable("$context.authorizer.principalId"),
    ),
    ("caller's data in the logs", "user agent", _plant_log_variable("$context.identity.userAgent")),
    (
        "caller's data in the logs",
        "header by name",
        _plant_log_variable("$method.request.header.Authorization"),
    ),
    ("caller's data in the logs", "INFO logging", _plant_method_setting("LoggingLevel", "INFO")),
    ("caller's data in the logs", "data trace", _plant_method_setting("DataTraceEnabled", True)),
    (
        "caller's data in the logs",
        "unquoted OFF read as false",
        _plant_method_setting("LoggingLevel", False),
    ),
]


@pytest.mark.parametrize(
    ("rule_name", "plant"),
    [pytest.param(rule, plant, id=f"{rule}: {label}") for rule, label, plant in VIOLATIONS],
)
def test_each_rule_catches_a_planted_violation(
    template: Template, rule_name: str, plant: Callable[[Template], None]
) -> None:
    # Given a copy of the template with one violation planted
    broken = copy.deepcopy(template)
    plant(broken)

    # When the rule checks the copy
    problems = RULES[rule_name](broken)

    # Then it reports the violation
    assert problems, f"{rule_name} missed the planted violation"
