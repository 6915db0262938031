"""Workload proofs through a connection pool: HypoPG's hypothetical indexes and a prepared
statement belong to one server connection, so each is created, planned with and let go in one
transaction, on one connection, and nothing is left for the next user of that connection."""

from contextlib import ExitStack

import psycopg
import pytest
from django.db import connection, connections

from django_dbtune import workload
from django_dbtune.advisor import proof
from django_dbtune.schema import model_schemas
from tests.conftest import listening, runtime_alias, suggest_workload
from tests.shop.models import Author, Book

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgres_only")]

BOUNCER_PORT = 6433
"""scripts/postgres_setup's PgBouncer: transaction pooling, transactions spread round robin
over its server connections."""


@pytest.fixture
def recorded(tmp_path):
    """A workload recorded without values (planned as generic plans: PREPARE), on committed
    rows that every server connection sees, with HypoPG in the database."""
    author = Author.objects.create(name="A")
    Book.objects.bulk_create([Book(title=f"title {i}", author=author) for i in range(20000)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE shop_book")
        cursor.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    path = tmp_path / "workload.jsonl"
    with workload.record(path):
        for i in range(5):
            list(Book.objects.filter(title=f"title {i}"))
    return path


@pytest.fixture
def bouncer():
    listening(BOUNCER_PORT, "PgBouncer", "scripts/postgres_setup")
    with runtime_alias(
        "bouncer", PORT=str(BOUNCER_PORT), DISABLE_SERVER_SIDE_CURSORS=True
    ) as alias:
        yield alias
    # PgBouncer keeps its server connections open: closed now, so that the test database
    # can be flushed and dropped (its admin console takes the simple query protocol only).
    name = connection.settings_dict["NAME"]
    with psycopg.connect(
        host="127.0.0.1", port=BOUNCER_PORT, user="postgres", dbname="pgbouncer", autocommit=True
    ) as console:
        for command in (f"KILL {name}", f"RESUME {name}"):
            console.pgconn.exec_(command.encode())


def _through_bouncer():
    name = connection.settings_dict["NAME"]
    return psycopg.connect(
        host="127.0.0.1",
        port=BOUNCER_PORT,
        user="postgres",
        dbname=name,
        autocommit=True,
        prepare_threshold=None,  # (psycopg's own prepared statements: none through a pooler)
    )


def _servers_in_turn(count=3):
    """Makes PgBouncer open ``count`` server connections (as many clients at once each in a
    transaction), so that the next transactions go round them in turn."""
    with ExitStack() as stack:
        clients = [stack.enter_context(_through_bouncer()) for _ in range(count)]
        pids = set()
        for client in clients:
            client.execute("BEGIN")
            pids.add(client.execute("SELECT pg_backend_pid()").fetchone()[0])
        for client in clients:
            client.execute("COMMIT")
    assert len(pids) == count
    return pids


def _left_on_each_server(pids):
    """What each server connection holds: (hypothetical indexes, prepared statements)."""
    left = {}
    with _through_bouncer() as client:
        for _ in range(4 * len(pids)):  # round robin: every server, several times
            row = client.execute(
                "SELECT pg_backend_pid(), (SELECT count(*) FROM hypopg_list_indexes), "
                "(SELECT count(*) FROM pg_prepared_statements)"
            ).fetchone()
            left[row[0]] = row[1:]
    assert set(left) >= pids
    return left


def _proven(path, database):
    """What ``suggest_indexes --workload PATH --database DATABASE`` suggests, as (fields,
    index name), and how it was proven (the command takes only the aliases of the settings,
    these tests make theirs at run time)."""
    schemas = {s.label: s for s in model_schemas(["shop"], database, read_database=True)}
    outcome = proof.prove(workload.read(path), schemas, database)
    return [(f.fields, f.index.name) for f in outcome.findings], outcome.method


def test_through_pgbouncer_in_transaction_mode_the_proof_is_the_same(recorded, bouncer):
    direct, _ = suggest_workload(recorded)
    assert [f["fields"] for f in direct] == [["title"]]
    pids = _servers_in_turn()
    # Each hypothetical index is planned on the server connection it was created on.
    pooled = _proven(recorded, bouncer)
    assert pooled == ([(("title",), direct[0]["index"]["name"])], "hypopg")
    # Nothing is left on any server connection for the pooler's next client.
    assert set(_left_on_each_server(pids).values()) == {(0, 0)}


def test_with_djangos_connection_pool_nothing_is_left_on_the_pooled_connection(recorded):
    pool = {"min_size": 1, "max_size": 1}
    options = {**connection.settings_dict.get("OPTIONS", {}), "pool": pool}
    with runtime_alias("pooled", OPTIONS=options) as alias:
        assert _proven(recorded, alias)[0][0][0] == ("title",)
        pooled = connections[alias]
        pid = pooled.connection.info.backend_pid
        pooled.close()  # back to the pool: the next borrower gets the same server connection
        with pooled.cursor() as cursor:
            cursor.execute(
                "SELECT pg_backend_pid(), (SELECT count(*) FROM hypopg_list_indexes), "
                "(SELECT count(*) FROM pg_prepared_statements)"
            )
            assert cursor.fetchone() == (pid, 0, 0)
        pooled.close_pool()
