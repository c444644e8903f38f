"""The CloudWatch dashboard of template.yaml plots only metrics that exist: the
functions' own (every name a handler passes to metrics.add_metric, in the namespace and
with the service dimension that Globals give Powertools) and SQS's, of the template's
queues; and it plots every figure the console shows for a deployed stack."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from devstack.template import TEMPLATE_PATH, load_template, resources_of_type

ROOT = Path(__file__).resolve().parents[2]
# The SQS metrics CloudWatch publishes for every queue (SQS Developer Guide,
# "Available CloudWatch metrics for Amazon SQS").
SQS_METRICS = {
    "ApproximateAgeOfOldestMessage",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesVisible",
    "NumberOfEmptyReceives",
    "NumberOfMessagesDeleted",
    "NumberOfMessagesReceived",
    "NumberOfMessagesSent",
    "SentMessageSize",
}


def emitted_metrics() -> set[str]:
    """Every metric name the handlers add (grep of metrics.add_metric("Name", ...))."""
    names: set[str] = set()
    for handler in (ROOT / "functions").glob("*/app.py"):
        names.update(re.findall(r'add_metric\(\s*"(\w+)"', handler.read_text()))
    return names


def plotted() -> list[list[Any]]:
    template = load_template(TEMPLATE_PATH)
    [dashboard] = resources_of_type(template, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    # The queue names resolve at deployment; keep which queue each one is.
    resolved = re.sub(r"\$\{(\w+)\.QueueName\}", r"queue:\1", body)
    resolved = resolved.replace("${AWS::Region}", "us-east-1")
    assert "${" not in resolved, "an unexpected substitution in the dashboard"
    widgets = json.loads(resolved)["widgets"]
    return [metric for widget in widgets for metric in widget["properties"]["metrics"]]


def test_every_metric_the_dashboard_plots_is_emitted() -> None:
    # Given the template's globals (Powertools' namespace and service) and queues
    template = load_template(TEMPLATE_PATH)
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    namespace = variables["POWERTOOLS_METRICS_NAMESPACE"]
    service = variables["POWERTOOLS_SERVICE_NAME"]
    queues = set(resources_of_type(template, "AWS::SQS::Queue"))
    emitted = emitted_metrics()

    # When the dashboard's metrics are read
    metrics = plotted()

    # Then each is a function's metric with its dimension, or SQS's for one of our queues
    assert metrics
    for metric in metrics:
        namespace_of, name, dimension, value = metric[:4]
        if namespace_of == namespace:
            assert name in emitted, f"{name} is plotted but no handler emits it"
            assert (dimension, value) == ("service", service)
        else:
            assert namespace_of == "AWS/SQS", metric
            assert name in SQS_METRICS, name
            assert dimension == "QueueName"
            assert value.removeprefix("queue:") in queues


def test_the_dashboard_plots_the_figures_of_the_console() -> None:
    # Given the figures the issue asks for
    wanted = {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "queue:PointsQueue"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "queue:PointsQueue"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "queue:PointsDeadLetterQueue"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "queue:RefreshDeadLetterQueue"),
        ("Matchstats", "PointsMessagesCompleted", "matchstats"),
        ("Matchstats", "PointsMessagesRetried", "matchstats"),
        ("Matchstats", "PointsMessagesDeadLettered", "matchstats"),
        ("Matchstats", "RefreshesExecuted", "matchstats"),
        ("Matchstats", "RefreshesSkipped", "matchstats"),
        ("Matchstats", "RefreshDuration", "matchstats"),
    }

    # When the dashboard's metrics are read
    metrics = plotted()

    # Then each is plotted, and freshness as its p95
    assert wanted <= {(m[0], m[1], m[3]) for m in metrics}
    freshness = next(m for m in metrics if m[1] == "Freshness")
    assert freshness[-1]["stat"] == "p95"
