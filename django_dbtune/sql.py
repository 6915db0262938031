"""What a SQL statement is: its shape, the tables it touches, and whether it writes.

Parsed with sqlglot (a real tokenizer and parser, never regular expressions over SQL) and
cached per statement text, so the same query seen a thousand times is analysed once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import sqlglot
from sqlglot import Token, TokenType, exp
from sqlglot.errors import SqlglotError

Kind = Literal["read", "write", "other"]

# Django's database vendors, as sqlglot's dialects.
DIALECTS = {"postgresql": "postgres", "sqlite": "sqlite", "mysql": "mysql", "oracle": "oracle"}

_LITERALS = frozenset(
    {
        TokenType.NUMBER,
        TokenType.STRING,
        TokenType.NATIONAL_STRING,
        TokenType.BYTE_STRING,
        TokenType.HEX_STRING,
        TokenType.BIT_STRING,
        TokenType.RAW_STRING,
        TokenType.HEREDOC_STRING,
        TokenType.PLACEHOLDER,
        TokenType.PARAMETER,
        TokenType.TRUE,
        TokenType.FALSE,
        TokenType.NULL,
    }
)
_POSITIONAL_CLAUSES = (TokenType.GROUP_BY, TokenType.ORDER_BY)
# What may follow a position in "GROUP BY 1, 2" or "ORDER BY 1 ASC NULLS LAST, 2".
_POSITIONAL_LIST = frozenset(
    {TokenType.NUMBER, TokenType.COMMA, TokenType.ASC, TokenType.DESC, TokenType.VAR}
)
_WRITES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.TruncateTable,
    exp.Drop,
    exp.Alter,
    exp.Create,
)
_RUNS_CODE = frozenset({"CALL", "DO", "EXEC", "EXECUTE"})
_WRITE_KEYWORDS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "REPLACE", "TRUNCATE", "LOAD"})
_READ_KEYWORDS = frozenset({"SELECT", "WITH", "VALUES", "EXPLAIN"})


_MYSQL_MODIFIERS = re.compile(
    r"^(\s*(?:INSERT|REPLACE|UPDATE|DELETE))(?:\s+(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|QUICK"
    r"|IGNORE)\b)+",
    re.IGNORECASE,
)
"""MySQL's modifiers after a write's keyword, which sqlglot reads as the table's name."""

_quiet = threading.local()


class _OwnParses(logging.Filter):
    """Drops sqlglot's warnings while django-dbtune parses the statements a project runs
    (VACUUM, SET, PRAGMA... fall back to a generic command, which is all this needs): they
    would reach the user's stderr through logging's last-resort handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "on", False)


logging.getLogger("sqlglot").addFilter(_OwnParses())


@contextmanager
def _quietly() -> Iterator[None]:
    was, _quiet.on = getattr(_quiet, "on", False), True
    try:
        yield
    finally:
        _quiet.on = was


@dataclass(frozen=True, slots=True)
class Statement:
    shape: str
    kind: Kind
    tables: tuple[str, ...]
    written_tables: tuple[str, ...]
    deleted_tables: tuple[str, ...] = ()
    """The tables a DELETE or TRUNCATE removes rows from (also in ``written_tables``),
    wherever it stands: after a comment, inside a WITH."""
    truncate_cascade: bool = False
    """A ``TRUNCATE ... CASCADE``: every table with a foreign key to these is emptied too."""
    runs_code: bool = False
    """A procedure call or an anonymous block (CALL, DO, EXEC): it may write any table and
    names none."""


def to_qmark(sql: str) -> str:
    """Django's ``%s`` placeholders as ``?``, the way its SQLite backend converts them."""
    return sql.replace("%s", "?").replace("%%", "%")


def parse_quietly(sql: str, vendor: str) -> exp.Expression | None:
    """One statement as sqlglot reads it in the vendor's dialect, without the warning it
    logs when it falls back to a generic command; None when it is not read. Every parse of
    django-dbtune goes through here or ``analyse``."""
    try:
        with _quietly():
            tree = sqlglot.parse_one(sql, read=DIALECTS.get(vendor))
    except (SqlglotError, ValueError):
        return None
    return tree if isinstance(tree, exp.Expression) else None


def locks(sql: str, vendor: str = "mysql") -> bool:
    """Whether a SELECT (Django's ``%s`` placeholders) takes row locks (``FOR UPDATE``, ``FOR
    SHARE``, ``LOCK IN SHARE MODE``), or cannot be read: either way, never run to measure it."""
    tree = parse_quietly(to_named(sql), vendor)
    return not isinstance(tree, exp.Select) or any(True for _ in tree.find_all(exp.Lock))


def rename_table(sql: str, old: str, new: str, vendor: str = "mysql") -> str:
    """``sql`` reading table ``new`` wherever it names table ``old`` (as a table or as a
    column's qualifier); strings, placeholders and everything else kept as written."""
    tokens = sqlglot.Dialect.get_or_raise(DIALECTS.get(vendor)).tokenize(sql)
    quote = "`" if vendor == "mysql" else '"'
    edited, end = [], 0
    for number, token in enumerate(tokens):
        after_dot = number > 0 and tokens[number - 1].token_type == TokenType.DOT
        is_name = token.token_type in (TokenType.IDENTIFIER, TokenType.VAR)
        if is_name and token.text == old and not after_dot:  # (after a dot: a column)
            edited += [sql[end : token.start], f"{quote}{new}{quote}"]
            end = token.end + 1
    return "".join([*edited, sql[end:]])


def to_named(sql: str) -> str:
    """Django's ``%s`` placeholders as ``:p0``, ``:p1``... in the order of its parameters,
    so that a parsed statement tells which parameter each comparison takes."""
    count = 0
    pieces = []
    for piece in sql.split("%%"):
        parts = piece.split("%s")
        named = [parts[0]]
        for part in parts[1:]:
            named.append(f":p{count}{part}")
            count += 1
        pieces.append("".join(named))
    return "%".join(pieces)


@lru_cache(maxsize=4096)
def analyse(sql: str, vendor: str = "", has_params: bool = True) -> Statement:
    """Analyse one statement as Django sends it to a database of the given vendor."""
    text = to_qmark(sql) if has_params else sql
    dialect = DIALECTS.get(vendor)
    try:
        tokens = sqlglot.tokenize(text, read=dialect)
    except SqlglotError:
        return Statement(" ".join(text.split()), _kind_from_keyword(text), (), ())
    shape = _shape(text, tokens)
    try:
        with _quietly():  # a statement sqlglot reads only as a "Command" is expected here
            # A placeholder with a cast (PostgreSQL's ``%s::varchar(20)[]``, what Django
            # writes for an ArrayField) is read as a typed NULL: "?::" does not parse.
            parsed = text.replace("?::", "NULL::") if has_params else text
            if dialect == "mysql":  # UPDATE LOW_PRIORITY t: the table is t, not LOW_PRIORITY
                parsed = _MYSQL_MODIFIERS.sub(r"\1", parsed)
            trees = [tree for tree in sqlglot.parse(parsed, read=dialect) if tree is not None]
    except SqlglotError:
        return Statement(shape, _kind_from_keyword(text), (), ())
    tables: list[str] = []
    written: list[str] = []
    deleted: list[str] = []
    cascade = runs_code = False
    kind: Kind = "other"
    for number, tree in enumerate(trees):
        if isinstance(tree, exp.Command) and tree.name.upper() == "REPLACE":
            # MySQL's REPLACE, which sqlglot leaves unparsed: an INSERT that first deletes
            # the rows it collides with. Unread, it is a write of unknown tables.
            tree = trees[number] = _replace_as_insert(tree, dialect)
            kind = "write"
            if isinstance(tree, exp.Insert):
                deleted.extend(_targets(tree, dialect))
        if isinstance(tree, exp.Command) and tree.name.upper() in _RUNS_CODE:
            runs_code = True
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            name = _table_name(table)
            if name and name not in ctes and name not in tables:
                tables.append(name)
        nodes = list(tree.find_all(*_WRITES))
        if isinstance(tree, exp.Command) and tree.name.upper() == "RENAME":
            nodes.append(tree)  # MySQL's RENAME TABLE, which sqlglot leaves unparsed
        for node in nodes:
            targets = _targets(node, dialect)
            if isinstance(node, exp.Create | exp.Command) and not targets:
                continue  # CREATE INDEX, VIEW, ...: no table's rows change
            kind = "write"
            if isinstance(node, exp.TruncateTable):
                cascade = cascade or str(node.args.get("option") or "").upper() == "CASCADE"
            for name in targets:
                if isinstance(node, exp.Delete | exp.TruncateTable) and name not in deleted:
                    deleted.append(name)
                if name not in written:
                    written.append(name)
                if name not in tables:
                    tables.append(name)
        if kind != "write" and isinstance(tree, exp.Query):
            kind = "read"
    return Statement(
        shape, kind, tuple(tables), tuple(written), tuple(deleted), cascade, runs_code
    )


def _replace_as_insert(tree: exp.Command, dialect: str | None) -> exp.Expression:
    """``REPLACE [INTO] t ...`` read as the ``INSERT`` it has the syntax of."""
    try:
        with _quietly():
            insert = sqlglot.parse_one(f"INSERT {tree.expression.name}", read=dialect)
    except SqlglotError:
        return tree
    return insert if isinstance(insert, exp.Insert) else tree


def _table_name(table: exp.Table) -> str:
    return f"{table.db}.{table.name}" if table.db else table.name


def _targets(node: exp.Expression, dialect: str | None) -> list[str]:
    """The tables a write statement changes (not the ones it only reads); for schema
    changes, every table named (both names of a rename)."""
    if isinstance(node, exp.Command):
        return _renamed(node.expression.name, dialect)
    if isinstance(node, exp.Create):
        target = node.this if node.kind == "TABLE" else None
        table = target if isinstance(target, exp.Table) else None
        if isinstance(target, exp.Schema):  # CREATE TABLE t (columns...)
            table = target.this if isinstance(target.this, exp.Table) else None
        tables = [table] if table is not None else []
    elif isinstance(node, exp.TruncateTable | exp.Drop | exp.Alter):
        tables = list(node.find_all(exp.Table))
    elif isinstance(node, exp.Update | exp.Delete) and _joined(node):
        tables = _joined_targets(node)
    else:
        target = node.this
        table = target if isinstance(target, exp.Table) else None
        if table is None and isinstance(target, exp.Expression):
            table = target.find(exp.Table)
        tables = [table] if table is not None else []
    return [name for table in tables if (name := _table_name(table))]


def _joined(node: exp.Update | exp.Delete) -> bool:
    """MySQL's multi-table forms: ``UPDATE a JOIN b ... SET``, ``UPDATE a, b SET``,
    ``DELETE a, b FROM a JOIN b``."""
    target = node.this
    return bool(node.args.get("tables")) or (
        isinstance(target, exp.Table) and bool(target.args.get("joins"))
    )


def _joined_targets(node: exp.Update | exp.Delete) -> list[exp.Table]:
    """The tables a multi-table UPDATE sets columns of, or a multi-table DELETE deletes
    from, by name or alias; every table it names when one cannot be told (a column set
    without its table's name, say): retiring a table too many is only a miss."""
    named = list(node.this.find_all(exp.Table))
    by_alias = {table.alias_or_name: table for table in named}
    if isinstance(node, exp.Delete):
        wanted = [table.alias_or_name for table in node.args.get("tables") or ()]
    else:
        wanted = [
            column.table
            for setting in node.expressions
            if isinstance(column := setting.this, exp.Column)
        ]
        if len(wanted) < len(node.expressions):
            return named
    if not wanted or any(not name or name not in by_alias for name in wanted):
        return named
    return [by_alias[name] for name in dict.fromkeys(wanted)]


def _renamed(text: str, dialect: str | None) -> list[str]:
    """The tables of ``TABLE a TO b, c TO d`` (what follows MySQL's RENAME)."""
    try:
        tokens = sqlglot.tokenize(text, read=dialect)
    except SqlglotError:
        return []
    names: list[str] = []
    name = ""
    for token in tokens[1:]:  # after TABLE
        if token.token_type == TokenType.DOT:
            name += "."
        elif token.token_type == TokenType.COMMA or token.text.upper() == "TO":
            names.append(name)
            name = ""
        else:
            name += token.text
    names.append(name)
    return [name for name in dict.fromkeys(names) if name]


def _kind_from_keyword(text: str) -> Kind:
    words = text.split(None, 1)
    first = words[0].upper() if words else ""
    if first in _WRITE_KEYWORDS:
        return "write"
    return "read" if first in _READ_KEYWORDS else "other"


def _shape(text: str, tokens: list[Token]) -> str:
    """The statement with every literal replaced by ``?`` and lists of them folded to ``...``.

    ``IN (?, ?, ?)`` and ``VALUES (?, ?), (?, ?)`` of any length share one shape.
    """
    # Spans (start, end inclusive, replacement) over the original text.
    spans: list[tuple[int, int, str]] = []
    in_positional_clause = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.token_type in _POSITIONAL_CLAUSES:
            in_positional_clause = True
        elif token.token_type not in _POSITIONAL_LIST:
            in_positional_clause = False
        if (
            in_positional_clause
            and token.token_type == TokenType.NUMBER
            and tokens[i - 1].token_type in (*_POSITIONAL_CLAUSES, TokenType.COMMA)
        ):
            i += 1  # GROUP BY 1, ORDER BY 2: column positions, not values
            continue
        if token.token_type == TokenType.L_PAREN:
            j = _placeholder_list_end(tokens, i)
            if j is not None:
                # Fold "(...), (...), ..." that follow one another into one.
                while (
                    j + 2 < len(tokens)
                    and tokens[j + 1].token_type == TokenType.COMMA
                    and (k := _placeholder_list_end(tokens, j + 2)) is not None
                ):
                    j = k
                spans.append((token.start, tokens[j].end, "(...)"))
                i = j + 1
                continue
        if token.token_type in _LITERALS and token.token_type not in (
            TokenType.TRUE,
            TokenType.FALSE,
            TokenType.NULL,
        ):
            end = token.end
            if token.token_type == TokenType.PARAMETER and i + 1 < len(tokens):
                i += 1
                end = tokens[i].end
            spans.append((token.start, end, "?"))
        i += 1
    pieces = []
    position = 0
    for start, end, replacement in spans:
        pieces.append(text[position:start])
        pieces.append(replacement)
        position = end + 1
    pieces.append(text[position:])
    return " ".join("".join(pieces).split())


def _placeholder_list_end(tokens: list[Token], open_index: int) -> int | None:
    """Index of the ``)`` closing a parenthesised list of literals only, else None."""
    expect_value = True
    for j in range(open_index + 1, len(tokens)):
        kind = tokens[j].token_type
        if expect_value and kind in _LITERALS:
            expect_value = False
        elif not expect_value and kind == TokenType.COMMA:
            expect_value = True
        elif not expect_value and kind == TokenType.R_PAREN:
            return j
        else:
            return None
    return None


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a read looks rows up by: the table it reads, the column each of its parameters
    is compared to, and whether it only counts or checks existence."""

    table: str
    compared: tuple[tuple[str, str] | None, ...]
    """For each placeholder, in the order the parameters come: the (table, column) it is
    compared to with ``=`` or ``IN``, on whichever table of the query that column is; None
    for anything else (a range, a LIKE, a value in the select list)."""
    result: Literal["rows", "count", "exists"]


@lru_cache(maxsize=1024)
def lookup(sql: str, vendor: str = "", has_params: bool = True) -> Lookup | None:
    """How a read like ``SELECT ... FROM t JOIN u ... WHERE u.col = %s`` finds its rows, or
    None (not a SELECT, or not parsed)."""
    text = to_qmark(sql) if has_params else sql
    tree = parse_quietly(text, vendor)
    if not isinstance(tree, exp.Select):
        return None
    source = tree.args.get("from") or tree.args.get("from_")
    table = source.find(exp.Table) if source is not None else None
    if table is None:
        return None
    tables = {t.alias_or_name: _table_name(t) for t in tree.find_all(exp.Table)}
    compared: list[tuple[str, str] | None] = []
    # Depth first, left before right: the order the placeholders have in the text.
    for placeholder in tree.find_all(exp.Placeholder, bfs=False):
        node = placeholder.parent
        column = node.this if isinstance(node, exp.EQ | exp.In) else None
        if isinstance(node, exp.EQ) and not isinstance(column, exp.Column):
            column = node.expression
        if isinstance(column, exp.Column):
            compared.append((tables.get(column.table, _table_name(table)), column.name))
        else:
            compared.append(None)
    result: Literal["rows", "count", "exists"] = "rows"
    if any(select.find(exp.Count) for select in tree.expressions):
        result = "count"
    elif tree.args.get("limit") is not None and all(
        isinstance(select.unalias(), exp.Literal) for select in tree.expressions
    ):
        result = "exists"
    return Lookup(_table_name(table), tuple(compared), result)


_PAGE = re.compile(r"\sLIMIT\s+-?\d+(?:\s+OFFSET\s+\d+)?\s*$", re.IGNORECASE)


def without_page(sql: str) -> str:
    """The SQL without the page it reads: Django writes ``LIMIT 25 OFFSET 50`` into the
    text, so every page of one list (and its ``first()``) is one shape, as
    ``pg_stat_statements`` counts it (a recorded shape keeps its first page's text)."""
    return _PAGE.sub(" LIMIT ?", sql) if "LIMIT" in sql else sql
