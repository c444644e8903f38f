"""The cron secret behind POST /cron/update-stats: a rotated secret is picked up after one
forced fetch, forced fetches are rate-limited, and the Secrets Manager fetcher caches
through Powertools and never shows the secret in an error."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.parameters import GetParameterError

from matchstats.config import ApiSettings
from matchstats.cron_secret import (
    DEFAULT_FORCED_FETCH_INTERVAL_S,
    DEFAULT_MAX_AGE_S,
    CronSecret,
    CronSecretUnavailableError,
    secrets_manager_fetcher,
)
from matchstats.errors import ConfigurationError
from testkit.events import load_event
from tests.api_support import EVENT_FILE, QUEUE_URL, SECRET, api_dependencies, api_event, invoke
from tests.fakes import FakeClock, FakeSecretsProvider, SecretStore

# Invocations that publish no metric (refusals) make Powertools warn; expected.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def test_a_rotated_secret_is_accepted_after_one_forced_fetch() -> None:
    # Given a cached secret that has just been rotated in the store
    store = SecretStore(stored="rotated-secret", cached=SECRET)
    deps = api_dependencies(cron_secret=CronSecret(store.fetch, clock=FakeClock()))

    # When the caller already uses the new secret
    answer = invoke(api_event(authorization="Bearer rotated-secret"), deps)

    # Then it is accepted after one cache-bypassing fetch, and the old secret no longer is
    assert answer.status == 202
    assert store.forced_fetches == 1
    assert invoke(load_event(EVENT_FILE), deps).status == 401


def test_forced_fetches_are_rate_limited() -> None:
    # Given an unchanged secret and a caller hammering the API with wrong ones
    store = SecretStore(stored=SECRET)
    clock = FakeClock()
    deps = api_dependencies(cron_secret=CronSecret(store.fetch, clock=clock))
    wrong = api_event(authorization="Bearer guess")

    # When 50 wrong requests arrive within the interval, then one just after it
    within = [invoke(wrong, deps).status for _ in range(50)]
    fetches_within = store.forced_fetches
    clock.now += DEFAULT_FORCED_FETCH_INTERVAL_S
    after = invoke(wrong, deps).status

    # Then all are refused, and the store was asked once per interval only
    assert set(within) == {401}
    assert fetches_within == 1
    assert (after, store.forced_fetches) == (401, 2)


def test_a_rotation_inside_the_interval_waits_for_the_next_one() -> None:
    # Given a forced fetch just spent on a wrong guess, then a rotation
    store = SecretStore(stored=SECRET)
    clock = FakeClock()
    deps = api_dependencies(cron_secret=CronSecret(store.fetch, clock=clock))
    assert invoke(api_event(authorization="Bearer guess"), deps).status == 401
    store.stored = "rotated-secret"

    # When the new secret arrives within the interval, and again after it
    clock.now += DEFAULT_FORCED_FETCH_INTERVAL_S - 1
    too_soon = invoke(api_event(authorization="Bearer rotated-secret"), deps).status
    clock.now += 1
    in_time = invoke(api_event(authorization="Bearer rotated-secret"), deps).status

    # Then it is refused until the next forced fetch is allowed, then accepted
    assert (too_soon, in_time) == (401, 202)


def test_a_secret_from_the_environment_is_never_re_fetched() -> None:
    # Given a secret that cannot rotate (CRON_SECRET), behind a store that counts fetches
    store = SecretStore(stored=SECRET)
    secret = CronSecret(store.fetch, rotates=False, clock=FakeClock())

    # When a wrong secret is presented
    matched = secret.matches("guess")

    # Then it is refused without a pointless forced fetch
    assert (matched, store.forced_fetches) == (False, 0)


def test_the_secrets_manager_fetcher_caches_and_forces_through_powertools() -> None:
    # Given a Powertools-like provider holding the secret with a trailing newline
    provider = FakeSecretsProvider(f"{SECRET}\n")
    fetch = secrets_manager_fetcher("arn:aws:secretsmanager:cron", provider=provider)  # type: ignore[arg-type]

    # When it is fetched from the cache and then forced
    values = [fetch(False), fetch(True)]

    # Then the stripped secret comes back, cached for 5 minutes unless forced
    assert values == [SECRET, SECRET]
    assert provider.calls == [
        {"name": "arn:aws:secretsmanager:cron", "max_age": DEFAULT_MAX_AGE_S, "force_fetch": False},
        {"name": "arn:aws:secretsmanager:cron", "max_age": DEFAULT_MAX_AGE_S, "force_fetch": True},
    ]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (GetParameterError("ResourceNotFoundException"), CronSecretUnavailableError),
        (b"binary", ConfigurationError),
        ("   ", ConfigurationError),
    ],
)
def test_an_unusable_secret_is_an_error_that_does_not_show_it(
    value: Any, error: type[Exception]
) -> None:
    # Given a provider that fails, or holds a binary or blank secret
    fetch = secrets_manager_fetcher("arn:cron", provider=FakeSecretsProvider(value))  # type: ignore[arg-type]

    # When the secret is fetched, Then the error names the secret, not its value
    with pytest.raises(error, match="arn:cron"):
        fetch(False)


def test_settings_prefer_the_local_secret_over_the_arn() -> None:
    # Given both sources configured
    settings = ApiSettings.from_env(
        {"REFRESH_QUEUE_URL": QUEUE_URL, "CRON_SECRET": SECRET, "CRON_SECRET_ARN": "arn:cron"}
    )

    # When the secret is built from them
    secret = CronSecret.from_settings(settings)

    # Then the local secret is the one that matches, and no store is asked
    assert secret.matches(SECRET)
    assert not secret.matches("arn:cron")
