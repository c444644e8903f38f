"""The `matchstats` command configured from a deployed CloudFormation stack: the queues from
its outputs, the database from its secret, and an explicit variable winning over both."""

from __future__ import annotations

import json
import uuid

import boto3
import psycopg
import pytest

from devstack.sqs import LocalSqs
from tests.integration.cli.steps import QUEUES, cli, dead_letter_points, season
from tests.template_queues import TemplateQueues

_LOCAL_CREDENTIALS = {
    "region_name": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}


def test_stack_outputs_and_its_database_secret_configure_the_command_and_env_wins(
    capsys: pytest.CaptureFixture[str],
    stack: TemplateQueues,
    local_sqs: LocalSqs,
    db: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a dead-lettered points message
    dead_letter_points(db, season(db).match_ids[:1])
    # ...a deployed stack: the four queue URLs as outputs (the points dead-letter one
    # stale), and DbSecretArn naming a secret in the RDS shape for the database
    endpoint = local_sqs.endpoint_url
    session = boto3.session.Session(**_LOCAL_CREDENTIALS)
    secret = session.client("secretsmanager", endpoint_url=endpoint).create_secret(
        Name=f"db-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps(
            {
                "host": db.info.host,
                "port": db.info.port,
                "username": db.info.user,
                "password": db.info.password or "trust-auth-ignores-it",
                "dbname": db.info.dbname,
            }
        ),
    )
    outputs = {f"{queue}Url": url for queue, url in stack.urls.items()}
    outputs["PointsDeadLetterQueueUrl"] = f"{endpoint}/000000000000/gone"
    name = f"matchstats-{uuid.uuid4().hex[:8]}"
    session.client("cloudformation", endpoint_url=endpoint).create_stack(
        StackName=name,
        TemplateBody=json.dumps(
            {
                "Parameters": {"DbSecretArn": {"Type": "String"}},
                "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {key: {"Value": value} for key, value in outputs.items()},
            }
        ),
        Parameters=[{"ParameterKey": "DbSecretArn", "ParameterValue": secret["ARN"]}],
    )
    # ...an operator environment without queue URLs or DATABASE_URL, except the points
    # dead-letter queue given explicitly
    for variable in ("DATABASE_URL", "POINTS_QUEUE_URL", "REFRESH_QUEUE_URL"):
        monkeypatch.delenv(variable)
    monkeypatch.delenv("REFRESH_DEAD_LETTER_QUEUE_URL")
    monkeypatch.setenv("DB_SSLMODE", "disable")

    # When the operator names the stack
    status = cli(capsys, "status", "--stack", name)
    shown = cli(capsys, "--stack", name, "dlq", "show", "points")
    missing = cli(capsys, "--stack", "no-such-stack", "status")

    # Then the queues come from its outputs and the database from its secret
    assert status.code == 0, status.err
    for queue in QUEUES:
        assert f"{queue} " in status.out
    assert "competition_standings" in status.out
    # ...the explicit variable won over the stale output
    assert shown.code == 0, shown.err
    assert "missing_scores" in shown.out
    # ...and an unknown stack is one line naming it
    assert missing.code == 1
    assert "cannot read stack no-such-stack" in missing.err
    assert missing.err.count("\n") == 1
