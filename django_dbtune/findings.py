"""The one shape every django-dbtune finding takes, and its text and JSON renderings."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from django.db import models

from django_dbtune.fix_targets import FixTarget

Severity = Literal["low", "medium", "high"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high")


@dataclass(frozen=True)
class Evidence:
    """A line of the project that a finding comes from."""

    file: str
    line: int
    code: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "code": self.code}


def python_literal(value: Any) -> str:
    """A constant as Python source, strings in double quotes (``True``, not JSON's ``true``)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def condition_code(field: str, value: Any, q: str = "Q") -> str:
    return f"{q}({field}={python_literal(value)})"


@dataclass(frozen=True)
class ProposedIndex:
    """An index to add, as ``models.Index(...)`` would declare it."""

    fields: tuple[str, ...]
    name: str
    opclasses: tuple[str, ...] = ()
    condition: str | None = None
    include: tuple[str, ...] = ()
    condition_lookup: tuple[str, Any] | None = None
    """The condition as (field, value), for writing it."""
    sql: str | None = None
    """For an index Meta.indexes cannot declare simply (a trigram index on an expression):
    the statement to run in a migration's RunSQL."""
    nulls: tuple[tuple[str, bool], ...] = ()
    """(field, NULLs first) where the index must place NULLs other than a plain B-tree does
    (``F("vrf").asc(nulls_first=True)``); the index is then declared by expressions."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "fields": list(self.fields),
            "name": self.name,
            "opclasses": list(self.opclasses),
            "condition": self.condition,
            "include": list(self.include),
            "sql": self.sql,
            "nulls_first": [name for name, first in self.nulls if first],
            "nulls_last": [name for name, first in self.nulls if not first],
        }

    def as_code(self, q: str = "Q", index: str = "models.Index", f: str = "models.F") -> str:
        """The ``models.Index(...)`` line to add to ``Meta.indexes``; ``q``, ``index`` and
        ``f`` are how the module names ``Q``, ``Index`` and ``F`` (``models.Q`` where it
        imports only ``models``)."""
        if self.nulls:
            parts = [_placed_code(name, dict(self.nulls), f) for name in self.fields]
            parts.append(f'name="{self.name}"')
        else:
            parts = [f"fields={list(self.fields)!r}".replace("'", '"'), f'name="{self.name}"']
        if self.opclasses:
            parts.append(f"opclasses={list(self.opclasses)!r}".replace("'", '"'))
        if self.condition_lookup:
            parts.append(f"condition={condition_code(*self.condition_lookup, q=q)}")
        if self.include:
            parts.append(f"include={list(self.include)!r}".replace("'", '"'))
        return f"{index}({', '.join(parts)})"

    def as_index(self) -> models.Index:
        """The ``models.Index`` itself: what the migration adds, and what the proof asks
        Django to render into SQL (one index, one rendering)."""
        condition = models.Q(**dict([self.condition_lookup])) if self.condition_lookup else None
        if self.nulls:
            if self.opclasses:
                raise ValueError("an index that places NULLs cannot declare operator classes")
            placed = dict(self.nulls)
            return models.Index(
                *(_placed(name, placed) for name in self.fields),
                name=self.name,
                condition=condition,
                include=list(self.include),
            )
        return models.Index(
            fields=list(self.fields),
            name=self.name,
            opclasses=list(self.opclasses),
            condition=condition,
            include=list(self.include),
        )


def _placed_code(name: str, placed: dict[str, bool], f: str) -> str:
    """:func:`_placed` as the code that declares it."""
    bare = name.lstrip("-")
    if bare not in placed and not name.startswith("-"):
        return f'"{bare}"'
    nulls = "" if bare not in placed else f"nulls_{'first' if placed[bare] else 'last'}=True"
    return f'{f}("{bare}").{"desc" if name.startswith("-") else "asc"}({nulls})'


def _placed(name: str, placed: dict[str, bool]) -> Any:
    """A field of an index declared by expressions: its name, or ``F(name)`` in its
    direction with its NULLs placed."""
    bare = name.lstrip("-")
    if bare not in placed:
        return models.F(bare).desc() if name.startswith("-") else bare
    nulls = {"nulls_first": True} if placed[bare] else {"nulls_last": True}
    column = models.F(bare)
    return column.desc(**nulls) if name.startswith("-") else column.asc(**nulls)


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: Severity
    model: str
    """``"app_label.ModelName"``."""
    fields: tuple[str, ...]
    database: str
    message: str
    index: ProposedIndex | None = None
    evidence: tuple[Evidence, ...] = field(default=())
    advice: str | None = None
    """What to do when it is not simply "add this index"."""
    table_rows: int | None = None
    """How many rows the table holds, as ``table_rows_source`` says, when the rank weighed
    it (``INDEX_SMALL_TABLE_ROWS``); None: not read, or unknown."""
    table_rows_source: str | None = None
    """``pg_class.reltuples`` or ``sqlite_stat1`` (the database's estimate), ``count`` or
    ``count_limit`` (counted, and the count stopped there: at least ``table_rows``)."""

    @property
    def app_label(self) -> str:
        return self.model.split(".", 1)[0]

    def at_least(self, severity: Severity) -> bool:
        return SEVERITIES.index(self.severity) >= SEVERITIES.index(severity)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "model": self.model,
            "fields": list(self.fields),
            "database": self.database,
            "index": self.index.as_dict() if self.index else None,
            "evidence": [item.as_dict() for item in self.evidence],
            "message": self.message,
            "advice": self.advice,
            "table_rows": self.table_rows,
            "table_rows_source": self.table_rows_source,
        }


KIND_TITLES = {
    "missing_fk_index": "Foreign key without an index",
    "unindexed_filter": "Filter or sort that no index serves",
    "composite_candidate": "Filter on several columns that no index serves",
    "cannot_tell": "Sort by a value known only at run time",
    "redundant_index": "Index another index already serves",
    "duplicate_index": "Duplicate index",
    "missing_in_database": "Declared index missing from the database",
    "unknown_in_database": "Index in the database that no model declares",
    "renamed_in_database": "Index with another name in the database",
    "workload_index": "Index proven on the recorded workload",
    "workload_scan": "Recorded query that reads a whole table",
    "invalid_index": "Invalid index (a failed concurrent build)",
    "unused_index": "Unused index",
    "sequential_scans": "Table read mostly by sequential scans",
    "connection_per_request": "A new database connection for every request",
    "connection_health_checks": "Persistent connections without health checks",
    "n_plus_one": "N+1 queries",
    "unused_select_related": "Unused select_related",
    "unused_prefetch_related": "Unused prefetch_related",
}
"""What each finding kind is called for people (the kind itself is for machines)."""


def title(kind: str) -> str:
    """``missing_fk_index`` -> ``Foreign key without an index``; a kind with no title yet
    reads as words."""
    return KIND_TITLES.get(kind) or kind.replace("_", " ").capitalize()


def by_severity(finding: Finding) -> int:
    """Most severe first, as a sort key (a stable sort keeps the order within a severity)."""
    return -SEVERITIES.index(finding.severity)


def sort_key(finding: Finding) -> tuple[str, str, int, str, tuple[str, ...]]:
    return (
        finding.app_label,
        finding.model,
        -SEVERITIES.index(finding.severity),
        finding.kind,
        finding.fields,
    )


def to_json(findings: Iterable[Finding]) -> str:
    return json.dumps([finding.as_dict() for finding in sorted(findings, key=sort_key)], indent=2)


def to_text(findings: Iterable[Finding]) -> str:
    """Findings for people: grouped by app, then model, most severe first."""
    lines: list[str] = []
    app = model = None
    for finding in sorted(findings, key=sort_key):
        if finding.app_label != app:
            app = finding.app_label
            lines.append(f"{app}")
        if finding.model != model:
            model = finding.model
            lines.append(f"  {model}")
        lines.append(f"    [{finding.severity}] {finding.kind}: {finding.message}")
        for item in finding.evidence:
            lines.append(f"      {item.file}:{item.line}  {item.code}")
        if finding.index is not None and finding.index.sql:
            lines.append(f"      add in a migration: migrations.RunSQL({finding.index.sql!r})")
        elif finding.index is not None:
            lines.append(f"      add to Meta.indexes: {finding.index.as_code()}")
        if finding.advice:
            lines.append(f"      advice: {finding.advice}")
    return "\n".join(lines)


NPlusOneKind = Literal["n_plus_one", "unused_select_related", "unused_prefetch_related"]


@dataclass(frozen=True)
class Proof:
    """What re-running the page (or test) with the fix applied measured.

    ``proven``: the fix ran, the answer kept its status, and the queries went down (for a
    removed eager load: did not go up). Otherwise ``unproven``, and ``reason`` says why.
    """

    verdict: Literal["proven", "unproven"]
    before: int | None = None
    after: int | None = None
    status_before: int | None = None
    status_after: int | None = None
    reason: str | None = None
    together: int | None = None
    """Queries with this fix and the proven fixes of the other findings of the same
    function applied at once (one loop's N+1s, fixed in one edit)."""
    together_with: tuple[str, ...] = ()
    """Those other findings' lines."""
    earlier: bool = False
    """Measured on an earlier request of the same page in this process (the middleware and
    the toolbar prove a fix once): its counts are that request's."""

    @property
    def text(self) -> str:
        """``proven: re-run with the fix, 102 -> 2 queries, status 200 as before``."""
        parts = []
        if self.before is not None and self.after is not None:
            parts.append(f"{self.before} -> {self.after} queries")
        if self.status_before is not None and self.status_before == self.status_after:
            parts.append(f"status {self.status_before} as before")
        elif self.status_before is not None and self.status_after is not None:
            parts.append(f"status {self.status_before} -> {self.status_after}")
        measured = ", ".join(parts)
        when = " (on an earlier request of this page: its counts)" if self.earlier else ""
        if self.verdict == "proven":
            text = f"proven: re-run with the fix, {measured}"
            if self.together is not None and self.before is not None:
                text += (
                    f"; with the fix for {' and '.join(self.together_with)} too: "
                    f"{self.before} -> {self.together} queries"
                )
            return text + when
        detail = "; ".join(part for part in (self.reason, measured) if part)
        return (f"unproven: {detail}" if detail else "unproven") + when

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "before": self.before,
            "after": self.after,
            "status_before": self.status_before,
            "status_after": self.status_after,
            "reason": self.reason,
            "together": self.together,
            "together_with": list(self.together_with),
            "earlier": self.earlier,
        }


@dataclass(frozen=True)
class NPlusOneFinding:
    """A relation loaded once per row (or an eager load never read), and what to change."""

    kind: NPlusOneKind
    relation: str
    """``"app_label.Model.field"``: the relation (or deferred field) that was loaded."""
    count: int
    """Extra queries it cost (for an unused select_related: 0, its cost is a wider join)."""
    call_site: str | None
    """The line that triggered the loads: ``"path.py:12 in view"`` or ``"template.html:7"``."""
    queryset_site: str | None
    """Where the queryset was built, or the project class that builds it."""
    fix: str
    """The change, as code: ``.select_related("author")``."""
    database: str = "default"
    sample_sql: str | None = None
    model: str = ""
    """``"app_label.Model"`` of the queryset the fix goes on."""
    path: str = ""
    """The lookup path from that queryset's model, as the fix spells it."""
    advice: str | None = None
    """A sentence more when the fix needs one (the admin skips nullable foreign keys...)."""
    url: str | None = None
    """The request path, when a request ran the queries."""
    relations: tuple[str, ...] = ()
    """Every relation the one fix covers (one fix site, several relations); ``relation``
    is the first."""
    target: FixTarget | None = None
    """The fix as data, when it is a change to one queryset or attribute."""
    proof: Proof | None = None
    """What re-running with the fix measured; None when it was not re-run."""
    baseline_keys: tuple[str, ...] = ()
    """The baseline keys of the findings merged into this one, when several were."""
    proven_fix: str | None = None
    """What ``fix`` becomes once the proof holds, when the fix the proof tries is not the
    one that holds in general: a plain prefetch for a filtered related read, which serves
    only code that reads the prefetched rows when there are some."""

    load_queries: tuple[int, ...] = ()
    """Where its per-row loads are in the detection's queries (their indices; empty when the
    detector did not see the loads themselves, as for hand-written lookups)."""

    def __post_init__(self) -> None:
        if not self.relations:
            object.__setattr__(self, "relations", (self.relation,))

    @property
    def headline(self) -> str:
        """What it is, without its count: ``N+1 on shop.Book.author``, or the unused load."""
        return headline_of(self.kind, self.relations, self.path, self.model)

    @property
    def message(self) -> str:
        lines = [titled(self.kind, self.relations, self.path, self.model, self.count)]
        if self.call_site:
            lines.append(f"  triggered at {self.call_site}")
        if self.queryset_site:
            lines.append(f"  queryset built at {self.queryset_site}")
        if self.proof is None:  # nothing ran the code again with it (no NPLUSONE_PROVE)
            lines.append(f"  suggestion (not tried yet): {self.fix}")
            how = (
                f"manage.py dbtune_nplusone {self.url}"
                if self.url
                else "the pytest plugin (without --dbtune-no-proof)"
            )
            lines.append(f"  nothing ran the code again with it: {how} proves it")
        else:
            unproven = self.proof.verdict == "unproven"
            lines.append(f"  {'suggestion (unproven)' if unproven else 'fix'}: {self.fix}")
            lines.append(f"  {self.proof.text}")
        if self.advice:
            lines.append(f"  note: {self.advice}")
        if self.sample_sql:
            lines.append(f"  sample SQL: {self.sample_sql}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.message

    @property
    def baseline_key(self) -> str:
        """What stays the same when lines move: kind, relation, file and function."""
        site = self.call_site or ""
        file, _, rest = site.partition(":")
        function = rest.partition(" in ")[2]
        return f"{self.kind} {self.relation} {self.path} {file} {function}".rstrip()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "relation": self.relation,
            "model": self.model,
            "path": self.path,
            "count": self.count,
            "call_site": self.call_site,
            "queryset_site": self.queryset_site,
            "fix": self.fix,
            "advice": self.advice,
            "database": self.database,
            "sample_sql": self.sample_sql,
            "url": self.url,
            "relations": list(self.relations),
            "target": self.target.as_dict() if self.target is not None else None,
            "proof": self.proof.as_dict() if self.proof is not None else None,
        }


def headline_of(kind: str, relations: Sequence[str], path: str, model: str) -> str:
    """An N+1 finding's headline from its fields (as its JSON has them too)."""
    if kind == "n_plus_one":
        return f"N+1 on {', '.join(relations)}"
    if kind == "unused_select_related":
        return f'Unused select_related("{path}") on {model}'
    return f'Unused prefetch_related("{path}") on {model}'


def titled(kind: str, relations: Sequence[str], path: str, model: str, count: int) -> str:
    """The first line of a finding's message: its headline, with the extra queries."""
    what = headline_of(kind, relations, path, model)
    if kind != "n_plus_one":
        return what
    return f"{what}: {count} extra quer{'y' if count == 1 else 'ies'}"
