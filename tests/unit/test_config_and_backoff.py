"""Configuration from the environment, and the retry backoff."""

from __future__ import annotations

import pytest

from matchstats.config import PointsSettings
from matchstats.errors import ConfigurationError
from matchstats.queues import backoff_seconds

POINTS_ENV = {
    "DATABASE_URL": "postgresql://localhost/db",
    "POINTS_QUEUE_URL": "https://sqs/points",
    "REFRESH_QUEUE_URL": "https://sqs/refresh",
    "DEAD_LETTER_QUEUE_URL": "https://sqs/dlq",
}


def test_points_settings_default_to_a_one_second_refresh_delay() -> None:
    settings = PointsSettings.from_env(POINTS_ENV)
    assert (settings.refresh_delay_seconds, settings.max_receive_count) == (1, 3)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"REFRESH_DELAY_SECONDS": "901"},
            "REFRESH_DELAY_SECONDS: Input should be less than or equal to 900",
        ),
        (
            {"REFRESH_DELAY_SECONDS": "soon"},
            "REFRESH_DELAY_SECONDS: Input should be a valid integer",
        ),
        ({"REFRESH_QUEUE_URL": ""}, "REFRESH_QUEUE_URL: Field required"),
        ({"DATABASE_URL": ""}, "set DATABASE_URL or DB_SECRET_ARN"),
    ],
)
def test_bad_configuration_names_the_variable(change: dict[str, str], problem: str) -> None:
    # Given an environment with one bad or missing variable
    env = {**POINTS_ENV, **change}

    # When the settings are read, Then the error names it
    with pytest.raises(ConfigurationError, match=problem):
        PointsSettings.from_env(env)


def test_a_secret_arn_is_enough_without_a_database_url() -> None:
    env = {**POINTS_ENV, "DATABASE_URL": "", "DB_SECRET_ARN": "arn:aws:secretsmanager:x"}
    assert PointsSettings.from_env(env).db_secret_arn == "arn:aws:secretsmanager:x"


def test_backoff_is_5_then_10_seconds_and_the_last_receive_dead_letters_at_once() -> None:
    assert [backoff_seconds(n, max_receive_count=3) for n in (1, 2, 3, 4)] == [5, 10, 0, 0]
    assert [backoff_seconds(n, max_receive_count=5) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 0]
