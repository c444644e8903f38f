"""The producer helper the application's scoring Lambda imports (moto in-process)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from matchstats.errors import ConfigurationError
from matchstats.producer import enqueue_points_calculation, enqueue_points_calculations

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def points_queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        yield sqs, sqs.create_queue(QueueName="PointsQueue")["QueueUrl"]


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Receives and deletes every message on the queue."""
    received: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        received += batch
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
    return received


def bodies(sqs: Any, url: str) -> list[dict[str, Any]]:
    return [json.loads(message["Body"]) for message in drain(sqs, url)]


def test_one_message_carries_the_match_and_its_version(points_queue: tuple[Any, str]) -> None:
    sqs, url = points_queue
    message_id = enqueue_points_calculation(42, score_version=3, queue_url=url, sqs_client=sqs)
    assert message_id
    assert bodies(sqs, url) == [{"matchId": 42, "scoreVersion": 3}]


def test_many_messages_go_in_batches_of_ten_and_keep_their_order(
    points_queue: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the queue URL in the environment, as the scoring Lambda has it
    sqs, url = points_queue
    monkeypatch.setenv("POINTS_QUEUE_URL", url)

    # When 25 matches are sent, some with their score version
    ids = enqueue_points_calculations(
        [*range(1, 21), (21, 2), (22, None), 23, 24, 25], sqs_client=sqs
    )

    # Then 25 messages arrived, one id per match in the order given
    assert len(ids) == len(set(ids)) == 25
    received = bodies(sqs, url)
    assert sorted(b["matchId"] for b in received) == list(range(1, 26))
    assert {"matchId": 21, "scoreVersion": 2} in received


def test_twenty_five_messages_return_each_ones_id_in_the_order_given(
    points_queue: tuple[Any, str],
) -> None:
    # Given 25 matches, more than one SendMessageBatch request holds
    sqs, url = points_queue
    match_ids = [*range(25, 0, -1)]

    # When they are sent in one call
    ids = enqueue_points_calculations(match_ids, queue_url=url, sqs_client=sqs)

    # Then the n-th id returned is the id of the message for the n-th match
    by_id = {m["MessageId"]: json.loads(m["Body"])["matchId"] for m in drain(sqs, url)}
    assert [by_id[message_id] for message_id in ids] == match_ids


def test_a_bad_match_id_is_refused_before_anything_is_sent(points_queue: tuple[Any, str]) -> None:
    sqs, url = points_queue
    with pytest.raises(ValidationError, match="match_id"):
        enqueue_points_calculations([1, 0, 3], queue_url=url, sqs_client=sqs)
    assert bodies(sqs, url) == []


def test_without_a_queue_url_the_error_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POINTS_QUEUE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="POINTS_QUEUE_URL"):
        enqueue_points_calculation(1)


def test_the_readme_node_producer_is_valid_javascript(tmp_path: Path) -> None:
    # Given the README's Node.js producer, and node
    [snippet] = re.findall(r"```js\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the README's Node.js producer is not checked")
    module = tmp_path / "producer.mjs"
    module.write_text(snippet, encoding="utf-8")

    # When node checks it as an ES module, as a Node.js Lambda loads an .mjs handler
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [node, "--check", str(module)], capture_output=True, text=True, check=False, timeout=60
    )

    # Then it is valid JavaScript that sends with the AWS SDK v3
    assert result.returncode == 0, result.stderr
    assert 'from "@aws-sdk/client-sqs"' in snippet
    assert "new SendMessageCommand(" in snippet
