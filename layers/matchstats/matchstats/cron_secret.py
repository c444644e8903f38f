"""The cron secret that guards POST /cron/update-stats, and the check of a presented one.

The secret comes from CRON_SECRET (local use) or from Secrets Manager (CRON_SECRET_ARN),
read through Powertools Parameters and cached for a few minutes. A rotated secret is
picked up without a redeploy: when a presented secret does not match the cached one,
the secret is fetched again once, bypassing the cache, and compared again. Those forced
fetches are rate-limited, so a caller hammering the API with wrong secrets cannot turn
each request into a Secrets Manager call.

Neither the secret nor the presented value is ever logged or put in an error message.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from matchstats.errors import ConfigurationError, TransientError
from matchstats.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from matchstats.config import ApiSettings

# How long a fetched secret is trusted before Secrets Manager is asked again.
DEFAULT_MAX_AGE_S = 300
# At most one cache-bypassing fetch per this many seconds (per execution environment).
DEFAULT_FORCED_FETCH_INTERVAL_S = 30.0

# Returns the current secret; `force` bypasses any cache.
SecretFetcher = Callable[[bool], str]


class CronSecretUnavailableError(TransientError):
    """The cron secret could not be read (Secrets Manager unreachable or refusing)."""


def static_fetcher(value: str) -> SecretFetcher:
    """A secret given in the environment: nothing to re-fetch, it changes on restart."""
    secret = _usable(value, "CRON_SECRET")

    def fetch(force: bool) -> str:
        return secret

    return fetch


def secrets_manager_fetcher(
    secret_arn: str,
    *,
    max_age_s: int = DEFAULT_MAX_AGE_S,
    provider: SecretsProvider | None = None,
) -> SecretFetcher:
    """The secret's SecretString, through a Powertools SecretsProvider and its cache."""
    from aws_lambda_powertools.utilities.parameters import GetParameterError, SecretsProvider

    secrets = provider if provider is not None else SecretsProvider()

    def fetch(force: bool) -> str:
        try:
            value = secrets.get(secret_arn, max_age=max_age_s, force_fetch=force)
        except GetParameterError as exc:
            raise CronSecretUnavailableError(
                f"cannot read the cron secret {secret_arn}: {exc}"
            ) from exc
        if not isinstance(value, str):
            raise ConfigurationError(f"the cron secret {secret_arn} must be a SecretString")
        return _usable(value, secret_arn)

    return fetch


def _usable(value: str, source: str) -> str:
    # An HTTP header value never carries leading or trailing whitespace, so a secret
    # stored with a trailing newline (a common copy-paste slip) could never match.
    secret = value.strip()
    if not secret:
        raise ConfigurationError(f"the cron secret from {source} is empty")
    return secret


class CronSecret:
    """Checks presented secrets against the current cron secret, in constant time."""

    def __init__(
        self,
        fetch: SecretFetcher,
        *,
        rotates: bool = True,
        forced_fetch_interval_s: float = DEFAULT_FORCED_FETCH_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._rotates = rotates
        self._forced_fetch_interval_s = forced_fetch_interval_s
        self._clock = clock
        self._last_forced_fetch: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> CronSecret:
        """CRON_SECRET when set, else the Secrets Manager secret CRON_SECRET_ARN."""
        if settings.cron_secret is not None:
            return cls(static_fetcher(settings.cron_secret.get_secret_value()), rotates=False)
        if not settings.cron_secret_arn:  # ApiSettings already refuses this
            raise ConfigurationError("set CRON_SECRET or CRON_SECRET_ARN")
        return cls(secrets_manager_fetcher(settings.cron_secret_arn))

    def matches(self, presented: str) -> bool:
        """Whether `presented` is the current secret.

        Raises CronSecretUnavailableError when the secret cannot be read at all.
        """
        if not presented:
            return False
        if _same(presented, self._fetch(False)):
            return True
        if not self._rotates or not self._may_force_fetch():
            return False
        # The secret may have been rotated since it was cached: ask once more.
        try:
            current = self._fetch(True)
        except CronSecretUnavailableError:
            logger.warning("cron secret re-fetch failed; keeping the cached secret", exc_info=True)
            return False
        logger.info("cron secret re-fetched after a mismatch")
        return _same(presented, current)

    def _may_force_fetch(self) -> bool:
        with self._lock:
            now = self._clock()
            last = self._last_forced_fetch
            if last is not None and now - last < self._forced_fetch_interval_s:
                return False
            self._last_forced_fetch = now
            return True


def _same(presented: str, secret: str) -> bool:
    # compare_digest takes time independent of where the values differ; it returns at
    # once on a length difference, which reveals only the length of a generated secret.
    return hmac.compare_digest(presented.encode("utf-8"), secret.encode("utf-8"))
