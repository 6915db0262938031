import contextlib
import json
import os
import shutil
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection

DB = os.environ.get("DBTUNE_DB", "sqlite")

if os.environ.get("DBTUNE_CACHE_LOCAL") == "1":
    # The query cache's tests again with the local copy on by default (.ci/run's run 3):
    # every read and write path must stay fresh with it.
    from dataclasses import replace

    from django_dbtune import conf as _conf

    _conf.OPTIONS["CACHE_LOCAL"] = replace(_conf.OPTIONS["CACHE_LOCAL"], default=True)


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run with DBTUNE_DB=postgres")


@pytest.fixture
def mariadb_only() -> None:
    if connection.vendor != "mysql":
        pytest.skip("needs MariaDB: run scripts/mariadb_setup, then with DBTUNE_DB=mariadb")


@pytest.fixture
def partial_indexes() -> None:
    """For tests of partial-index advice (MariaDB's is in test_innodb_advice.py)."""
    if not connection.features.supports_partial_indexes:
        pytest.skip("needs partial indexes: run with DBTUNE_DB=postgres or on SQLite")


@pytest.fixture
def indexable_startswith() -> None:
    """For tests of prefix-search indexes: MariaDB's startswith is LIKE BINARY, which no
    index serves (test_innodb_advice.py)."""
    if connection.vendor == "mysql":
        pytest.skip("needs a startswith an index serves: run with DBTUNE_DB=postgres or on SQLite")


@pytest.fixture
def unindexed_foreign_keys() -> None:
    """For tests of unindexed foreign keys: InnoDB indexes every one (test_innodb_advice.py)."""
    if connection.vendor == "mysql":
        pytest.skip("needs unindexed foreign keys: run with DBTUNE_DB=postgres or on SQLite")


@pytest.fixture
def undo_ddl():
    """DDL commits at once on MariaDB: a ``django_db`` test that builds or drops an index or
    a table by hand would leave the change to every later test. The test appends the undo of
    each change it made (a callable); where the database cannot roll DDL back, they run after
    the test, last first. PostgreSQL and SQLite roll the change back with the test's
    transaction."""
    undo: list = []
    yield undo
    if not connection.features.can_rollback_ddl:
        for step in reversed(undo):
            step()


@pytest.fixture(scope="session", autouse=True)
def _database_features_known(django_db_setup, django_db_blocker):
    """Django 6's system checks ask every database whether it supports JSONField: asked
    first inside a test that may not use that database, the question is a forbidden query.
    Asked once here, the answer is cached for the whole run."""
    from django.db import connections

    with django_db_blocker.unblock():
        for alias in connections:
            assert connections[alias].features.supports_json_field in (True, False)
            if connections[alias].vendor == "mysql":
                # The model checks ask MariaDB's version too (for its column types); a
                # database no test of this run uses was not created.
                with contextlib.suppress(DatabaseError):
                    assert connections[alias].data_types


@pytest.fixture(autouse=True)
def _query_cache_breaker_closed():
    """Each test starts with the query cache's breaker closed: a test that ends by breaking
    the connection (on purpose) leaves it open for seconds, and the next test's cached
    reads would all go to the database."""
    from django_dbtune.cache.store import store

    store._open_until = 0.0
    store._missed = False


ROOT = Path(__file__).resolve().parent.parent


class Site(type(Path())):  # a Path that also carries the environment to run it with
    env: dict[str, str]


POSTGRES = DB == "postgres"
MARIADB = DB == "mariadb"


def admin_sql(sql):
    """Run CREATE/DROP DATABASE, which cannot run inside the tests' transaction."""
    settings = connection.settings_dict
    if MARIADB:
        import MySQLdb

        admin = MySQLdb.connect(
            host=settings["HOST"],
            port=int(settings["PORT"]),
            user=settings["USER"],
            password=settings["PASSWORD"],
        )
        try:
            admin.cursor().execute(sql)
        finally:
            admin.close()
        return
    import psycopg

    with psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"],
        user=settings["USER"],
        password=settings["PASSWORD"],
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute(sql)


@pytest.fixture
def project(tmp_path):
    """A copy of the example project on PostgreSQL when the suite runs there, else SQLite."""
    yield from _site(tmp_path, mariadb=False)


@pytest.fixture
def db_project(tmp_path):
    """The same, on MariaDB too when the suite runs there (for what must be shown on it:
    the migrations --write writes apply there)."""
    yield from _site(tmp_path, mariadb=MARIADB)


def _site(tmp_path, mariadb):
    copy = Site(tmp_path / "site")
    shutil.copytree(
        ROOT / "example_project", copy, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__")
    )
    copy.env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DBTUNE_DB": "postgres" if POSTGRES else "mariadb" if mariadb else "sqlite",
    }
    name = f"dbtune_roundtrip_{uuid.uuid4().hex[:8]}"
    if POSTGRES:
        admin_sql(f'CREATE DATABASE "{name}"')
        copy.env["DBTUNE_PG_NAME"] = name
    if mariadb:
        admin_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        copy.env["DBTUNE_MARIADB_NAME"] = name
    yield copy
    if POSTGRES:
        admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if mariadb:
        admin_sql(f"DROP DATABASE IF EXISTS `{name}`")


def pytest_collection_modifyitems(items):
    # A test that runs manage.py of a copy of the example project starts Django (and often
    # migrates) in a subprocess: seconds each, so it is "slow" (-m "not slow" leaves it out).
    for item in items:
        if {"project", "db_project"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def suggest_workload(path, *options, app="shop"):
    """``suggest_indexes APP --workload PATH --format json``: (the findings, stderr)."""
    out, err = StringIO(), StringIO()
    call_command(
        "suggest_indexes",
        app,
        "--workload",
        str(path),
        "--format",
        "json",
        *options,
        stdout=out,
        stderr=err,
    )
    return json.loads(out.getvalue()), err.getvalue()


@contextlib.contextmanager
def runtime_alias(name, **changes):
    """A database alias reaching the test database another way (another port, a pool), made
    at run time while inside, as Django's test case allows; the commands take only the
    settings' aliases, so tests call the functions behind them."""
    from django.db import connections

    wrapper = type(connections["default"])  # the backend's DatabaseWrapper
    connections[name] = wrapper({**connection.settings_dict, **changes}, name)
    try:
        yield name
    finally:
        connections[name].close()
        del connections[name]


def listening(port, what, setup):
    """Skips the test unless ``what`` answers on 127.0.0.1:``port`` (in CI: fails it)."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        message = f"needs {what} on 127.0.0.1:{port}: run {setup}"
        if os.environ.get("DBTUNE_CI"):
            pytest.fail(message)
        pytest.skip(message)
