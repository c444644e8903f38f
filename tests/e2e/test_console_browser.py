"""The console in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by selenium) against the local stack with a seeded season and a
poison message. It checks the figures on the page against the database and the queues,
discards the poison through the page, and saves a screenshot to
test-results/console.png (git-ignored) for the README and for whoever reads the run."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devstack.queue_specs import queue_counts
from devstack.stack import DevStack, StackOptions
from matchstats.producer import enqueue_points_calculations
from ops.aws import Aws
from ops.console.data import ConsoleData
from ops.console.server import ConsoleServer
from ops.context import Context
from testkit.seed import seed_dev_season

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-results"
CHROMIUM = Path(os.environ.get("MATCHSTATS_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("MATCHSTATS_CHROMEDRIVER", "/usr/bin/chromedriver"))
POISON = 999_999
WAIT_S = 30

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason=f"needs Chromium at {CHROMIUM} and chromedriver at {CHROMEDRIVER}"
        " (Debian: apt-get install chromium chromium-driver; .ci/run installs them)",
    ),
]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions as until  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    """The local stack with make dev's season, processed, and one poison message."""
    with DevStack(StackOptions(schedule_interval_s=3600)) as running:
        with psycopg.connect(running.database_url, autocommit=True) as conn:
            seeded = seed_dev_season(conn)
        enqueue_points_calculations(
            [*seeded.played, seeded.bad_data, POISON],
            queue_url=running.queue_urls["PointsQueue"],
            sqs_client=running.sqs,
        )
        running.wait_until_idle(timeout_s=120)
        yield running


@pytest.fixture(scope="module")
def console(stack: DevStack) -> Iterator[ConsoleServer]:
    environment = stack.environment()
    context = Context(argparse.Namespace(stack=None), Aws(local=environment), environment)
    with ConsoleServer(ConsoleData(context)) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    profile = tempfile.mkdtemp(prefix="matchstats-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # Root in CI needs --no-sandbox; the rest keeps Chromium off the (closed) network,
    # where its background connections would stall it.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1500,1600",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    )
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def cell(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text.strip())


def test_the_console_shows_the_pipeline_and_discards_a_poison_message(
    stack: DevStack, console: ConsoleServer, browser: WebDriver
) -> None:
    wait = WebDriverWait(browser, WAIT_S)
    # Given the URL the console printed, opened in the browser
    browser.get(console.url)
    wait.until(until.presence_of_element_located((By.CSS_SELECTOR, "table#queues")))

    # Then the standings on the page are the database's
    with psycopg.connect(stack.database_url) as conn:
        expected = {
            str(competitor): str(points)
            for competitor, points in conn.execute(
                "SELECT competitor_id, points FROM competition_table"
            ).fetchall()
        }
    shown = {
        row.get_attribute("data-competitor"): row.find_element(
            By.CSS_SELECTOR, "[data-field=points]"
        ).text
        for row in browser.find_elements(By.CSS_SELECTOR, "table.standings tbody tr")
    }
    assert shown == expected
    assert len(shown) == 12
    # ...the dead-letter queue's depth is SQS's: the bad-data match and the poison
    dead = queue_counts(stack.sqs, stack.queue_urls["PointsDeadLetterQueue"])
    assert dead.total == 2
    depth = '#queues tr[data-queue="PointsDeadLetterQueue"] [data-field=visible]'
    assert cell(browser, depth) == "2"
    # ...and the poison sits under its error kind, with its reason
    poison = '[data-dlq=points] [data-kind="match_not_found"]'
    assert f"match {POISON} does not exist" in cell(browser, poison)
    assert "match 16 is completed without both scores" in cell(
        browser, '[data-dlq=points] [data-kind="missing_scores"]'
    )

    # When the operator discards the poison: its button, then the confirmation
    browser.find_element(By.CSS_SELECTOR, f"{poison} tbody button.danger").click()
    confirm = wait.until(until.element_to_be_clickable((By.ID, "confirm-action")))
    assert "Discard 1 message(s)" in cell(browser, "#confirm-panel")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "console-confirm.png"))
    confirm.click()

    # Then the page says so, the kind disappears, and SQS holds only the repairable one
    wait.until(
        until.text_to_be_present_in_element((By.ID, "confirm"), "discarded 1 of 1 message(s)")
    )
    wait.until(until.invisibility_of_element_located((By.CSS_SELECTOR, poison)))
    # (counted visible or in flight, as any reader might hold it)
    assert queue_counts(stack.sqs, stack.queue_urls["PointsDeadLetterQueue"]).total == 1
    wait.until(until.text_to_be_present_in_element((By.CSS_SELECTOR, depth), "1"))
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "console.png"))

    # When another poison message arrives, with the page left alone (no click)
    enqueue_points_calculations(
        [POISON + 1], queue_url=stack.queue_urls["PointsQueue"], sqs_client=stack.sqs
    )

    # Then the page lists the dead letters again by itself (their count changed), and
    # the browser ran everything under the console's Content-Security-Policy
    wait.until(
        until.text_to_be_present_in_element(
            (By.CSS_SELECTOR, "[data-dlq=points]"), f"match {POISON + 1} does not exist"
        )
    )
    refused = [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]
    assert refused == []
