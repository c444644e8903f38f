"""Logs: nothing a caller sends is logged. API access logs name only ACCESS_LOG_VARIABLES
(no header, so never Authorization; no authorizer value but its error), and execution
logging is OFF or ERROR, never INFO nor full request data."""

from __future__ import annotations

import re
from typing import Any

from devstack.template import resources_of_type
from tests.unit.template_reading import Template
from tests.unit.template_security import Plant, Violation

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


def _access_log(template: Template) -> dict[str, Any]:
    setting: dict[str, Any] = template["Resources"]["RefreshApi"]["Properties"]["AccessLogSetting"]
    return setting


def _plant_log_variable(variable: str) -> Plant:
    def plant(template: Template) -> None:
        _access_log(template)["Format"] = _access_log(template)["Format"].replace(
            '"$context.requestId"', f'"$context.requestId", "extra":"{variable}"'
        )

    return plant


def _plant_method_setting(key: str, value: Any) -> Plant:
    def plant(template: Template) -> None:
        template["Resources"]["RefreshApi"]["Properties"]["MethodSettings"][0][key] = value

    return plant


_LOGS = "caller's data in the logs"
VIOLATIONS: list[Violation] = [
    (_LOGS, "authorizer value", _plant_log_variable("$context.authorizer.principalId")),
    (_LOGS, "user agent", _plant_log_variable("$context.identity.userAgent")),
    (_LOGS, "header by name", _plant_log_variable("$method.request.header.Authorization")),
    (_LOGS, "INFO logging", _plant_method_setting("LoggingLevel", "INFO")),
    (_LOGS, "data trace", _plant_method_setting("DataTraceEnabled", True)),
    (_LOGS, "unquoted OFF read as false", _plant_method_setting("LoggingLevel", False)),
]
