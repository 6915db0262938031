"""What the database's planner says: EXPLAIN, read one way per database.

A plan is what the planner produces for one statement (plain ``EXPLAIN``: nothing runs).
PostgreSQL's and MariaDB's are read from their JSON forms, SQLite's from the rows of
``EXPLAIN QUERY PLAN``; each becomes the same :class:`Plan`: each table access, the index it
goes through if any, and whether it reads every row. The test helpers, the proof and the
toolbar all read plans here.

The proof also plans with indexes that do not exist yet: :class:`TrialIndexes` makes them
present, as HypoPG hypothetical indexes or built inside a transaction that is rolled back.
Their SQL is Django's own (``Index.create_sql``), rendered from the ``models.Index`` the
migration would write.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from django.db import models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from sqlglot import exp

from django_dbtune.advisor import online_build as online
from django_dbtune.advisor.table_values import TableValues
from django_dbtune.errors import DbtuneError
from django_dbtune.schema.innodb import is_mariadb
from django_dbtune.sql import parse_quietly

if TYPE_CHECKING:
    from django_dbtune.advisor.scratch_copy import ScratchCopies

LOCK_SECONDS = 2
BUILD_SECONDS = 300
LOCK_TIMEOUT = f"{LOCK_SECONDS}s"
BUILD_TIMEOUT = f"{BUILD_SECONDS}s"
TRIAL_PREFIX = online.TRIAL_PREFIX
"""A built trial index's name: plans and ``pg_indexes`` tell it from the project's own."""


class PlannerError(DbtuneError):
    """The database's plans cannot be read here (not PostgreSQL, MariaDB, MySQL or SQLite)."""


@dataclass(frozen=True)
class Access:
    """One way a plan reads a table."""

    table: str
    detail: str
    """As the database words it: ``Seq Scan on shop_book``, ``SEARCH shop_book USING INDEX
    ...``."""
    index: str | None = None
    full: bool = False
    """Reads every row (a sequential scan, or SQLite's ``SCAN``, with an index or not; on
    PostgreSQL an index scan with no condition on the index's columns and no ``LIMIT``
    above it, which walks the whole index for its order)."""


@dataclass
class Plan:
    """What the planner produced for one statement."""

    accesses: list[Access] = field(default_factory=list)
    """In the order the plan tree lists them, outermost first."""
    cost: float = 0.0
    """The planner's estimated total cost: PostgreSQL's, MariaDB's ``Last_query_cost``
    (SQLite shows none)."""
    top: str = ""
    """The root node (PostgreSQL): what a plan reading no table is described by."""
    text: str = ""
    """The plan as the database prints it, for people."""
    unit: str = "cost"
    """What ``cost`` counts: the planner's estimate, or (MariaDB's ``ANALYZE``, which runs
    the read) the ``rows read`` from every table."""
    rows_read: dict[str, float] = field(default_factory=dict)
    """MariaDB's ``ANALYZE``: the rows the read took from each table, however it reached it."""

    @property
    def indexes(self) -> dict[str, set[str]]:
        """Per table, the indexes the plan reads it through."""
        found: dict[str, set[str]] = {}
        for access in self.accesses:
            if access.index is not None:
                found.setdefault(access.table, set()).add(access.index)
        return found

    @property
    def all_indexes(self) -> set[str]:
        return {access.index for access in self.accesses if access.index is not None}

    @property
    def seq_scans(self) -> set[str]:
        """Tables read in full without any index."""
        return {a.table for a in self.accesses if a.full and a.index is None}

    def full_reads(self, table: str) -> list[Access]:
        """Where the plan reads every row of ``table`` (through an index or not)."""
        return [a for a in self.accesses if a.full and a.table == table]

    def reading(self, table: str) -> str:
        """How the plan reads ``table``: ``Bitmap Heap Scan on shop_book using idx``."""
        number = next((n for n, a in enumerate(self.accesses) if a.table == table), None)
        if number is None:
            return self.top
        access = self.accesses[number]
        index = access.index
        if access.detail.startswith("Bitmap Heap Scan") and number + 1 < len(self.accesses):
            index = self.accesses[number + 1].index  # its Bitmap Index Scan, listed next
        return f"{access.detail} using {index}" if index else access.detail


# --- Reading plans -------------------------------------------------------------------------


def read_postgresql(document: Any, text: str = "") -> Plan:
    """A plan from ``EXPLAIN (FORMAT JSON)``: the parsed document or its text."""
    if isinstance(document, str):
        document = json.loads(document)
    top = document[0]["Plan"]
    plan = Plan(cost=float(top["Total Cost"]), top=str(top["Node Type"]), text=text)
    # Depth first, parents before children: a Bitmap Index Scan names no relation, its
    # table is the Bitmap Heap Scan's above it.
    stack: list[tuple[dict[str, Any], str, bool]] = [(top, "", False)]
    while stack:
        node, above, limited = stack.pop()
        table = str(node.get("Relation Name") or "")
        index = str(node["Index Name"]) if "Index Name" in node else None
        kind = str(node["Node Type"])
        limited = limited or kind == "Limit"
        if table or index:
            owner = table or above
            whole_index = kind in _INDEX_SCANS and "Index Cond" not in node and not limited
            full = kind == "Seq Scan" or whole_index
            plan.accesses.append(Access(owner, f"{kind} on {owner}", index, full=full))
        children = node.get("Plans", [])
        stack.extend((child, table or above, limited) for child in reversed(children))
    return plan


_INDEX_SCANS = ("Index Scan", "Index Only Scan")


def measure_mariadb(connection: BaseDatabaseWrapper, sql: str, params: Any) -> Plan:
    """The plan MariaDB ran the read with (``ANALYZE FORMAT=JSON``: the SELECT runs, its
    rows are not returned), with the rows it read from every table as its cost. The
    optimizer's own estimate (``Last_query_cost``) leaves out a ``LIMIT`` that an index in
    the sort's order stops early, which is much of what an index buys a page; the rows read
    do not. At most ``BUILD_TIMEOUT``."""
    seconds = BUILD_SECONDS
    with connection.cursor() as cursor:
        cursor.execute(
            f"SET STATEMENT max_statement_time = {seconds} FOR ANALYZE FORMAT=JSON {sql}",
            params,
        )
        document = cursor.fetchone()[0]
    plan = read_mysql(document)
    plan.unit = "rows read"
    stack: list[Any] = [json.loads(plan.text)]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if "table_name" in node and "r_rows" in node:
                rows = float(node.get("r_loops") or 0) * float(node["r_rows"] or 0)
                table = str(node["table_name"])
                plan.rows_read[table] = plan.rows_read.get(table, 0.0) + rows
                plan.cost += rows
            stack.extend(node.values())
    return plan


def read_mysql(document: Any) -> Plan:
    """A plan from MariaDB's (or MySQL's) ``EXPLAIN FORMAT=JSON``: every ``table`` object
    in it, wherever it nests (``nested_loop``, ``filesort``, subqueries), in document order.
    Access type ``ALL`` reads the table in full, ``index`` reads every row through its key."""
    text = document if isinstance(document, str) else json.dumps(document, indent=2)
    plan = Plan(text=text)
    stack: list[Any] = [json.loads(text)]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        if "table_name" in node and "access_type" in node:
            table, kind = str(node["table_name"]), str(node["access_type"])
            index = str(node["key"]) if node.get("key") else None
            detail = f"{kind} on {table}"
            plan.accesses.append(Access(table, detail, index, full=kind in ("ALL", "index")))
        stack.extend(reversed(list(node.values())))
    return plan


def read_sqlite(rows: Sequence[Sequence[Any]]) -> Plan:
    """A plan from the rows of ``EXPLAIN QUERY PLAN`` (the detail is the last column)."""
    details = [str(row[-1]) for row in rows]
    plan = Plan(text="\n".join(details))
    for detail in details:
        words = detail.split()
        if len(words) < 2 or words[0] not in ("SCAN", "SEARCH"):
            continue
        index = None
        if "INDEX" in words[2:]:
            index = words[words.index("INDEX") + 1]
        elif "PRIMARY" in words[2:]:
            index = "PRIMARY KEY"
        plan.accesses.append(Access(words[1], detail, index, full=words[0] == "SCAN"))
    return plan


# --- Asking for a plan -----------------------------------------------------------------------


def explain(
    connection: BaseDatabaseWrapper,
    sql: str,
    params: Any,
    *,
    large_table: bool = False,
    text: bool = False,
) -> Plan:
    """The plan of a SELECT with its parameters. ``large_table`` plans as for a large table
    (PostgreSQL: ``enable_seqscan = off``); ``text`` adds the plan as the database prints it
    (one more EXPLAIN on PostgreSQL)."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            return read_sqlite(cursor.fetchall())
    if connection.vendor == "mysql":
        return _explain_mysql(connection, sql, params, large_table)
    if connection.vendor != "postgresql":
        raise PlannerError(
            f"django-dbtune reads PostgreSQL, MariaDB and SQLite plans; database "
            f"{connection.alias!r} is {connection.vendor}."
        )
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if large_table:
            cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        document = cursor.fetchone()[0]
        printed = ""
        if text:
            cursor.execute(f"EXPLAIN {sql}", params)
            printed = "\n".join(row[0] for row in cursor.fetchall())
        if large_table:
            cursor.execute("SET LOCAL enable_seqscan = DEFAULT")
    return read_postgresql(document, printed)


def _explain_mysql(
    connection: BaseDatabaseWrapper, sql: str, params: Any, large_table: bool
) -> Plan:
    """MariaDB's ``EXPLAIN FORMAT=JSON`` (MySQL's names the same fields). As for a large
    table, MariaDB plans the statement with ``max_seeks_for_key = 1``, which makes a lookup
    through any index look cheaper than reading the table (MySQL has no ``SET STATEMENT``:
    its plan is the plain one)."""
    prefix = ""
    if large_table and is_mariadb(connection):
        prefix = "SET STATEMENT max_seeks_for_key = 1 FOR "
    with connection.cursor() as cursor:
        cursor.execute(f"{prefix}EXPLAIN FORMAT=JSON {sql}", params)
        document = cursor.fetchone()[0]
        # The optimizer's estimate for the plan it chose (0 where it has none: a UNION,
        # some subqueries); EXPLAIN FORMAT=JSON of MariaDB 10 has no cost.
        cursor.execute("SHOW SESSION STATUS LIKE 'Last_query_cost'")
        row = cursor.fetchone()
    plan = read_mysql(document)
    plan.cost = float(row[1]) if row else 0.0
    return plan


_statements = itertools.count(1)


def explain_generic(connection: BaseDatabaseWrapper, sql: str, *, dollar: bool = False) -> Plan:
    """The plan for any parameter values (PostgreSQL): ``sql`` is prepared and planned with
    ``plan_cache_mode = force_generic_plan``. Its placeholders are Django's ``%s``, or
    PostgreSQL's own ``$1``... with ``dollar`` (as ``pg_stat_statements`` shows them)."""
    name = f"dbtune_plan_{next(_statements)}"
    positional, count = (sql, dollar_parameters(sql)) if dollar else positional_parameters(sql)
    arguments = f"({', '.join(['NULL'] * count)})" if count else ""
    alias = connection.alias
    # A prepared statement lives in one server connection, and outlives a rolled-back
    # transaction: prepared, planned and let go in one transaction (which a pooler keeps on
    # one connection), the plan in a savepoint so that the DEALLOCATE runs after an error.
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute(f"PREPARE {name} AS {positional}")
        try:
            with transaction.atomic(using=alias):
                cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                cursor.execute(f"EXPLAIN (FORMAT JSON) EXECUTE {name}{arguments}")
                row = cursor.fetchone()
                cursor.execute("SET LOCAL plan_cache_mode = DEFAULT")
        finally:
            cursor.execute(f"DEALLOCATE {name}")
    return read_postgresql(row[0])


def positional_parameters(sql: str) -> tuple[str, int]:
    """Django's ``%s`` placeholders as ``$1, $2...`` (and ``%%`` as ``%``), with how many."""
    out: list[str] = []
    count = 0
    i = 0
    while i < len(sql):
        pair = sql[i : i + 2]
        if pair == "%s":
            count += 1
            out.append(f"${count}")
            i += 2
        elif pair == "%%":
            out.append("%")
            i += 2
        else:
            out.append(sql[i])
            i += 1
    return "".join(out), count


def dollar_parameters(sql: str) -> int:
    """How many ``$n`` parameters a statement takes (the highest n)."""
    tree = parse_quietly(sql, "postgresql")
    if tree is None:
        return 0
    numbers = [int(p.name) for p in tree.find_all(exp.Parameter) if p.name.isdigit()]
    return max(numbers, default=0)


# --- Indexes that do not exist yet -----------------------------------------------------------


def index_sql(
    connection: BaseDatabaseWrapper,
    model: type[models.Model],
    index: models.Index,
    table: str | None = None,
) -> str:
    """``CREATE INDEX`` for ``index`` exactly as a migration adding it runs it (on ``table``
    instead of the model's own, when given: a scratch copy of it)."""
    editor = connection.schema_editor(collect_sql=True)
    statement = index.create_sql(model, editor)
    if table is not None:
        statement.rename_table_references(model._meta.db_table, table)
    return str(statement)


def hypopg_state(connection: BaseDatabaseWrapper) -> Literal["installed", "available", "absent"]:
    """Whether the database can plan with hypothetical indexes (HypoPG)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'")
        if cursor.fetchone():
            return "installed"
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'")
        return "available" if cursor.fetchone() else "absent"


class TrialIndexes:
    """Makes indexes present to the planner of one connection: on PostgreSQL hypothetical
    (``method="hypopg"``: nothing is built, no lock) or built inside a transaction that is
    rolled back (``"build"``, under ``lock_timeout`` and ``statement_timeout``); on MariaDB
    and MySQL built online and dropped (``"online"``)."""

    def __init__(
        self,
        connection: BaseDatabaseWrapper,
        method: Literal["hypopg", "build", "online", "sample"],
    ):
        self.connection = connection
        self.method = method
        self._numbers = itertools.count(1)
        self.values = TableValues(connection)
        """Parameter values for reads recorded without any (MariaDB plans need values)."""
        self.plans: dict[tuple[str, ...], dict[int, Plan | None]] = {}
        """Plans of recorded reads (by ``id``), per set of indexes present (as declared)."""
        self.copies: ScratchCopies | None = None
        """``method="sample"``: the scratch copies trial indexes are built on."""

    @contextmanager
    def present(
        self, indexes: list[tuple[type[models.Model], models.Index]]
    ) -> Iterator[list[str]]:
        """While inside, ``indexes`` exist for the planner: yields their names as plans
        show them (HypoPG names its own; a built one is ``dbtune_trial_<n>``)."""
        alias = self.connection.alias
        if self.method == "hypopg":
            # A hypothetical index lives in one server connection: created, planned with
            # and reset in one transaction, which a pooler (PgBouncer in transaction mode)
            # keeps on one. The savepoint inside leaves the reset possible after an error.
            with transaction.atomic(using=alias):
                try:
                    with transaction.atomic(using=alias), self.connection.cursor() as cursor:
                        names = []
                        for model, index in indexes:
                            statement = index_sql(self.connection, model, index)
                            cursor.execute(
                                "SELECT indexname FROM hypopg_create_index(%s)", [statement]
                            )
                            names.append(cursor.fetchone()[0])
                        yield names
                finally:
                    with self.connection.cursor() as cursor:
                        cursor.execute("SELECT hypopg_reset()")
            return
        if self.copies is not None:
            with self.copies.built(indexes, self._numbers) as names:
                yield names
            return
        if self.connection.vendor == "mysql":
            trials = []
            for model, index in indexes:
                trial = replace_name(index, f"{TRIAL_PREFIX}{next(self._numbers)}")
                statement = index_sql(self.connection, model, trial)
                trials.append(online.Trial(model._meta.db_table, trial.name, statement))
            with online.built(self.connection, trials, LOCK_SECONDS, BUILD_SECONDS):
                yield [trial.name for trial in trials]
            return
        with transaction.atomic(using=alias):
            with self.connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                cursor.execute(f"SET LOCAL statement_timeout = '{BUILD_TIMEOUT}'")
                names = []
                for model, index in indexes:
                    trial = replace_name(index, f"{TRIAL_PREFIX}{next(self._numbers)}")
                    cursor.execute(index_sql(self.connection, model, trial))
                    names.append(trial.name)
            try:
                yield names
            finally:
                transaction.set_rollback(True, using=alias)


def replace_name(index: models.Index, name: str) -> models.Index:
    """The same index under another name."""
    _, args, kwargs = index.deconstruct()
    kwargs["name"] = name
    return type(index)(*args, **kwargs)
