"""Fixtures: a real PostgreSQL and redis-server on free ports, migrated once per run.

Set TEST_DATABASE_URL / TEST_REDIS_URL to reuse running servers instead (a fresh
database is created on the PostgreSQL server and dropped afterwards).
"""

from __future__ import annotations

import os
import tempfile

# Before prometheus_client is imported (by the app): every process of the run, the
# workers too, writes its metrics here, so /metrics shows them all.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="stepwise-metrics-"))

import glob
import pwd
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import port_for
import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor
from pytest_redis import factories as redis_factories
from redis import Redis
from sqlalchemy.engine import make_url

from app import create_app, migrate
from app.config import Settings
from app.runtime import Runtime
from app.services import api_keys
from tests.support import FakeServices, WorkerPool

ROOT = Path(__file__).resolve().parent.parent

redis_server = redis_factories.redis_proc(port=None)


def _pg_ctl() -> str:
    found = shutil.which("pg_ctl") or max(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), default=None)
    if not found:
        pytest.exit("pg_ctl not found: install PostgreSQL (apt-get install postgresql), or set TEST_DATABASE_URL")
    return found


def _start_postgres(base: Path) -> PostgreSQLExecutor:
    """Start a throwaway cluster. PostgreSQL refuses to run as root, so as root it
    runs as the `postgres` user, through a wrapper around pg_ctl."""
    pg_ctl = _pg_ctl()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
        wrapper = base / "pg_ctl_as_postgres"
        wrapper.write_text(f'#!/bin/sh\nexec runuser -u postgres -- {pg_ctl} "$@"\n')
        wrapper.chmod(0o755)
        pg_ctl = str(wrapper)
    executor = PostgreSQLExecutor(
        executable=pg_ctl,
        host="127.0.0.1",
        port=port_for.get_port(None),
        datadir=str(base / "data"),
        unixsocketdir=str(base),
        logfile=str(base / "postgresql.log"),
        startparams="-w",
        dbname="stepwise_test",
        # Durability buys nothing in a throwaway cluster; these make commits cheap.
        postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
    )
    executor.start()
    return executor


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    reuse = os.environ.get("TEST_DATABASE_URL")
    if reuse:
        url = make_url(reuse)
        name = f"stepwise_test_{uuid.uuid4().hex[:8]}"
        janitor = DatabaseJanitor(
            user=url.username or "postgres",
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            dbname=name,
            maintenance_dbname=url.database or "postgres",
            password=url.password,
        )
        janitor.init()
        yield url.set(database=name).render_as_string(hide_password=False)
        _drop_connections(janitor, name)
        janitor.drop()
        return
    base = Path(tempfile.mkdtemp(prefix="stepwise-pg-"))
    base.chmod(0o755)
    executor = _start_postgres(base)
    try:
        janitor = DatabaseJanitor(user="postgres", host=executor.host, port=executor.port, dbname="stepwise_test")
        janitor.init()
        yield f"postgresql://postgres@{executor.host}:{executor.port}/stepwise_test"
    finally:
        executor.stop()
        shutil.rmtree(base, ignore_errors=True)


def _drop_connections(janitor: DatabaseJanitor, name: str) -> None:
    with psycopg.connect(
        host=janitor.host,
        port=janitor.port,
        user=janitor.user,
        password=janitor.password,
        dbname=janitor.maintenance_dbname,
        autocommit=True,
    ) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    reuse = os.environ.get("TEST_REDIS_URL")
    if reuse:
        Redis.from_url(reuse).flushdb()
        return reuse
    server = request.getfixturevalue("redis_server")
    return f"redis://{server.host}:{server.port}/0"


@pytest.fixture(scope="session")
def fake_services() -> Iterator[FakeServices]:
    """The outside world the handlers call, on a local port."""
    services = FakeServices()
    yield services
    services.close()


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, fake_services: FakeServices) -> Settings:
    migrate.upgrade(database_url)
    os.environ["REDIS_URL"] = redis_url  # for tests/handlers.py, in this process too
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        queue_name="stepwise-test",
        db_pool_size=10,
        handler_modules="tests.handlers",
        # Short enough for tests to watch recovery happen.
        scheduler_interval_seconds=0.2,
        queued_grace_seconds=2,
        worker_lost_seconds=3,
        worker_heartbeat_seconds=1,
        # The fake services listen on loopback, which handlers refuse unless allowed.
        outbound_allowlist="127.0.0.1/32,::1/128",
        circuit_failure_threshold=3,
        circuit_cooldown_seconds=2.0,
        llm_base_url=fake_services.url("/v1"),
        llm_api_key="test-key",
        # The peers' simulated handlers wait a seventh of the peers' time (still long enough
        # for a cancel or a deadline to find them running).
        simulated_latency=0.15,
        # Tests poll hard; the limits themselves are tested on an app of their own.
        rate_limit_reader="100000/minute",
        rate_limit_writer="100000/minute",
        rate_limit_admin="100000/minute",
        rate_limit_trigger="100000/minute",
    )


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.from_settings(settings)
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture(scope="session")
def admin_key(runtime: Runtime) -> str:
    """An admin API key for the tests' clients (auth stays on in every test)."""
    with runtime.sessions() as session:
        _, key = api_keys.create_key(session, f"tests-{uuid.uuid4().hex[:8]}", "admin")
    return key


@pytest.fixture(scope="session")
def authorized(admin_key: str) -> Callable[[Flask], FlaskClient]:
    """A test client of any app, sending the admin key."""

    def client_of(app: Flask) -> FlaskClient:
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {admin_key}"
        return client

    return client_of


@pytest.fixture
def client(app: Flask, authorized: Callable[[Flask], FlaskClient]) -> FlaskClient:
    return authorized(app)


@pytest.fixture(scope="session")
def workers(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPool]:
    """Two worker processes shared by the end-to-end tests, and a scheduler."""
    pool = WorkerPool(settings, tmp_path_factory.mktemp("workers"))
    pool.start(2)
    pool.start_scheduler()
    yield pool
    pool.stop_all()
