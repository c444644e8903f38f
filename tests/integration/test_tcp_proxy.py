"""The fault-injecting TCP proxy (devstack.tcp_proxy) between a client and the real
PostgreSQL: a blackhole that stops both directions without closing anything, a resume
that delivers what waited, a cut that closes every connection, an added latency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from devstack.tcp_proxy import TcpProxy
from tests.waiting import wait_for


@pytest.fixture
def proxy(database_url: str) -> Iterator[TcpProxy]:
    with TcpProxy.in_front_of(database_url) as running:
        yield running


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def backend_state(db: psycopg.Connection, application_name: str) -> tuple[Any, ...] | None:
    """(state, query) of the server session that `application_name` names."""
    return db.execute(
        "SELECT state, query FROM pg_stat_activity WHERE application_name = %s",
        (application_name,),
    ).fetchone()


def test_a_blackholed_query_never_reaches_the_server_until_resumed(
    proxy: TcpProxy,
    database_url: str,
    db: psycopg.Connection,
    background: ThreadPoolExecutor,
) -> None:
    # Given a client connected through the proxy
    with psycopg.connect(
        proxy.url(database_url), autocommit=True, application_name="blackholed-up"
    ) as client:
        assert client.execute("SELECT 1").fetchone() == (1,)

        # When the proxy blackholes and the client sends a query
        proxy.blackhole()
        answer: Future[Any] = background.submit(
            lambda: client.execute("SELECT 'through'").fetchone()
        )
        time.sleep(1)

        # Then the client is still waiting, the server never saw the query, and the
        # connection is open on both sides
        assert not answer.done()
        assert backend_state(db, "blackholed-up") == ("idle", "SELECT 1")
        assert proxy.connections == 1
        assert not client.closed

        # When the path comes back
        proxy.resume()

        # Then the query arrives and its answer with it
        assert answer.result(timeout=5) == ("through",)


def test_a_blackhole_holds_the_servers_answer_until_resumed(
    proxy: TcpProxy,
    database_url: str,
    db: psycopg.Connection,
    background: ThreadPoolExecutor,
) -> None:
    # Given a client whose query is running on the server
    with psycopg.connect(
        proxy.url(database_url), autocommit=True, application_name="blackholed-down"
    ) as client:
        answer: Future[Any] = background.submit(
            lambda: client.execute("SELECT pg_sleep(0.5), 'late'").fetchone()
        )
        wait_for(lambda: (backend_state(db, "blackholed-down") or ("",))[0] == "active", 5)

        # When the proxy blackholes before the answer comes back
        proxy.blackhole()

        # Then the server finishes, but the client gets nothing while the blackhole lasts
        wait_for(lambda: (backend_state(db, "blackholed-down") or ("",))[0] == "idle", 5)
        time.sleep(0.5)
        assert not answer.done()

        # ...and the answer once it is over
        proxy.resume()
        assert answer.result(timeout=5) == ("", "late")


def test_a_cut_closes_every_connection_and_new_ones_still_pass(
    proxy: TcpProxy, database_url: str
) -> None:
    # Given two clients connected through the proxy
    url = proxy.url(database_url)
    with psycopg.connect(url, autocommit=True) as first, psycopg.connect(url) as second:
        assert first.execute("SELECT 1").fetchone() == (1,)
        assert second.execute("SELECT 1").fetchone() == (1,)

        # When the proxy cuts its connections
        cut = proxy.cut()

        # Then both clients find theirs closed
        assert cut == 2
        for client in (first, second):
            with pytest.raises(psycopg.OperationalError):
                client.execute("SELECT 1")
            assert client.broken
        # ...and a new connection goes through
        with psycopg.connect(url) as third:
            assert third.execute("SELECT 2").fetchone() == (2,)
        wait_for(lambda: proxy.connections == 0, 5)


def test_delay_adds_its_time_to_each_wait_on_the_server(proxy: TcpProxy, database_url: str) -> None:
    # Given a client connected through the proxy, and a delay of 100 ms
    with psycopg.connect(proxy.url(database_url), autocommit=True) as client:
        proxy.delay_s = 0.1

        # When it runs five queries one after another
        started = time.monotonic()
        for _ in range(5):
            client.execute("SELECT 1")
        elapsed = time.monotonic() - started

    # Then each waited the delay once
    assert 0.5 <= elapsed < 1.5, elapsed


def test_stop_releases_a_client_waiting_in_a_blackhole(
    database_url: str, background: ThreadPoolExecutor
) -> None:
    # Given a client waiting on a blackholed proxy
    proxy = TcpProxy.in_front_of(database_url).start()
    client = psycopg.connect(proxy.url(database_url), autocommit=True)
    proxy.blackhole()
    answer = background.submit(lambda: client.execute("SELECT 1"))
    time.sleep(0.3)

    # When the proxy stops
    stopped = threading.Thread(target=proxy.stop)
    stopped.start()
    stopped.join(10)

    # Then it stopped promptly and the client sees its connection closed
    assert not stopped.is_alive()
    with pytest.raises(psycopg.OperationalError):
        answer.result(timeout=5)
    client.close()
