"""Shared fixtures: local services on 127.0.0.1, and small agents built from scripted models."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pymysql
import pytest
from ironloop.demo.services.faults import FaultInjector
from ironloop.demo.services.server import ServiceThread, start_search_service

# -- running beside each other (pytest-xdist, ``-n 2 --dist loadgroup``) ---------------------------------------------
# Tests run on two workers at once. A group runs on one worker, one test after another:
# - "heavy": many processes and seconds of CPU each, with deadlines (chaos and the demo's tasks under faults,
#   SIGKILLs at random moments, Celery fleets, a rate limit shared through Redis): two of them at once on two
#   cores would measure the machine, not the code;
# - a module with module-scoped fixtures (a built wheel, BFCL's data, the sandbox's probe) keeps them built once.
# Everything else is spread test by test. Each worker has its own scratch databases (`ScratchDatabases`); queues,
# ports and thread ids are unique per test already.

HEAVY_MODULES = frozenset(
    {"test_chaos", "test_crash_kills", "test_demo", "test_distributed", "test_celery_delivery", "test_shared_traffic"}
)
MODULE_GROUPS = frozenset({"test_bfcl", "test_packaging", "test_sandbox"})


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.stem
        if module in HEAVY_MODULES:
            item.add_marker(pytest.mark.xdist_group("heavy"))
        elif module in MODULE_GROUPS:
            item.add_marker(pytest.mark.xdist_group(module))


@pytest.fixture
def search_service() -> Iterator[tuple[ServiceThread, FaultInjector]]:
    """The bundled search service with no faults."""
    service, injector = start_search_service(profile="none")
    yield service, injector
    service.stop()


@pytest.fixture
def reference_search_service() -> Iterator[tuple[ServiceThread, FaultInjector]]:
    """The bundled search service under the reference fault profile (45 % 503, 15 % 0.4 s delay)."""
    service, injector = start_search_service(profile="reference", seed=11)
    yield service, injector
    service.stop()


# -- checkpoint databases -----------------------------------------------------------------------------------------
# Real servers on this machine (and in CI): PostgreSQL 127.0.0.1:5432, MariaDB 127.0.0.1:3306. They are shared by
# concurrent test runs, so each session creates its own databases (ironloop_t_<hex>) and drops them at the end.
# A server that cannot be reached fails the tests that need it when $CI is "true", and skips them otherwise.

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432
MARIADB_HOST, MARIADB_PORT = "127.0.0.1", 3306
CHECKPOINT_BACKENDS = ("sqlite", "postgresql", "mariadb")


class ScratchDatabases:
    """Creates throwaway databases on the shared servers; `drop_all` removes every one it made."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._made: list[tuple[str, str, str]] = []  # (backend, admin user, database)
        self._admins: dict[str, str] = {}
        self._lock = threading.Lock()

    def new(self, backend: str) -> str:
        """The URL of a new, empty database on ``backend`` (sqlite, postgresql or mariadb)."""
        name = f"ironloop_t_{secrets.token_hex(6)}"
        if backend == "sqlite":
            return f"sqlite:///{self.directory / name}.db"
        if backend == "postgresql":
            user = self._postgres_admin()
            for attempt in range(5):  # CREATE DATABASE fails while another session holds template1: wait a bit
                try:
                    with _postgres(user, "postgres") as admin:
                        admin.execute(f'CREATE DATABASE "{name}"')
                    break
                except psycopg.errors.ObjectInUse:
                    if attempt == 4:
                        raise
                    time.sleep(0.2 * (attempt + 1))
            self._made.append((backend, user, name))
            return f"postgresql+psycopg://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
        if backend == "mariadb":
            self._mariadb_admin()
            with _mariadb() as admin, admin.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            self._made.append((backend, "root", name))
            return f"mariadb+pymysql://root@{MARIADB_HOST}:{MARIADB_PORT}/{name}"
        raise ValueError(f"unknown backend {backend!r}")

    def _postgres_admin(self) -> str:
        with self._lock:
            if "postgresql" not in self._admins:
                errors = []
                for user in ("postgres", "root"):
                    try:
                        with _postgres(user, "postgres"):
                            self._admins["postgresql"] = user
                            break
                    except psycopg.OperationalError as exc:
                        errors.append(f"user {user}: {' '.join(str(exc).split())}")
                else:
                    server_unreachable("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT, "; ".join(errors))
            return self._admins["postgresql"]

    def _mariadb_admin(self) -> None:
        with self._lock:
            if "mariadb" not in self._admins:
                try:
                    _mariadb().close()
                except pymysql.MySQLError as exc:
                    server_unreachable("MariaDB", MARIADB_HOST, MARIADB_PORT, str(exc))
                self._admins["mariadb"] = "root"

    def drop_all(self) -> None:
        for backend, user, name in reversed(self._made):
            try:
                if backend == "postgresql":
                    with _postgres(user, "postgres") as admin:
                        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                else:
                    with _mariadb() as admin, admin.cursor() as cursor:
                        # Connections left open on the database would block the DROP: end them first.
                        cursor.execute("SELECT id FROM information_schema.processlist WHERE db = %s", (name,))
                        for (connection_id,) in cursor.fetchall():
                            with contextlib.suppress(pymysql.MySQLError):
                                cursor.execute(f"KILL {int(connection_id)}")
                        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            except Exception as exc:  # never hide the tests' own outcome behind a cleanup failure
                warnings.warn(f"could not drop scratch database {name} on {backend}: {exc}", stacklevel=1)
        self._made.clear()


def server_unreachable(what: str, host: str, port: int, reason: str) -> NoReturn:
    """Fail (in CI) or skip (elsewhere) a test whose database server cannot be reached."""
    message = f"{what} at {host}:{port} is not reachable: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: a missing database server is a failure)", pytrace=False)
    pytest.skip(f"SKIPPED, NO DATABASE: {message}")


def _postgres(user: str, database: str) -> psycopg.Connection:
    return psycopg.connect(
        host=POSTGRES_HOST, port=POSTGRES_PORT, user=user, dbname=database, autocommit=True, connect_timeout=5
    )


def _mariadb() -> pymysql.connections.Connection:
    return pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", password="", connect_timeout=5)


@pytest.fixture(scope="session")
def scratch_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchDatabases]:
    """Makes fresh databases (``.new("postgresql")``...); all are dropped at the end of the session."""
    databases = ScratchDatabases(tmp_path_factory.mktemp("databases"))
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def postgres_url(scratch_databases: ScratchDatabases) -> str:
    """A PostgreSQL database of this test session (tests share it: use unique thread ids)."""
    return scratch_databases.new("postgresql")


@pytest.fixture(scope="session")
def mariadb_url(scratch_databases: ScratchDatabases) -> str:
    """A MariaDB database of this test session (tests share it: use unique thread ids)."""
    return scratch_databases.new("mariadb")


@pytest.fixture(params=CHECKPOINT_BACKENDS)
def checkpoint_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a checkpoint database, once per backend: a new SQLite file, or the session's server database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'checkpoints.db'}"
    return request.getfixturevalue("postgres_url" if request.param == "postgresql" else "mariadb_url")
