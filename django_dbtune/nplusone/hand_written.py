"""Per-row queries no relation announced: the same read, from the same place, with one
value that changes from row to row (``Author.objects.get(pk=book.author_id)`` in a loop, a
generic relation looked up by hand, a library's manager the detector does not know, one
``pk__in=[...]`` list per row), or with the same values every time (a parent looked up
again for each of its children, ``CustomField.objects.all()`` read again per row)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from django.apps import apps
from django.db.models import Model

from django_dbtune.call_sites import relative_path
from django_dbtune.capture import QueryRecord
from django_dbtune.findings import NPlusOneFinding, Proof
from django_dbtune.fix_targets import FixTarget, RowCall
from django_dbtune.nplusone.fixes import queryset_site
from django_dbtune.nplusone.homes import in_owner, qualname
from django_dbtune.nplusone.own_prefetch import with_own_prefetch
from django_dbtune.nplusone.per_row_source import Written, annotation_name, module_of, read_call
from django_dbtune.nplusone.state import Detection, Group, Tag
from django_dbtune.sql import Lookup, lookup


def per_row_queries(
    detection: Detection, threshold: int, url: str | None
) -> list[NPlusOneFinding]:
    """Reads of one shape from one place whose parameters differ in exactly one position:
    one value per row, whatever the joins. Named after the column that value is compared to."""
    records = detection.log.records
    # By line first, which costs nothing: only a line that ran a query often enough has its
    # statements taken apart (a clean page's few queries never are).
    by_line: dict[tuple[str, str, int, str | None], list[int]] = defaultdict(list)
    for index in _uncovered(detection, len(records)):
        record = records[index]
        if record.filename is None or record.lineno is None:
            continue
        if isinstance(record.params, list | tuple):
            by_line[record.alias, record.filename, record.lineno, record.function].append(index)
    grouped: dict[tuple[str, str, str, int, str | None], list[QueryRecord]] = defaultdict(list)
    positions: dict[int, list[int]] = defaultdict(list)
    for (alias, filename, lineno, function), indexes in by_line.items():
        if len(indexes) < threshold:
            continue
        for index in indexes:
            record = records[index]
            if record.kind != "read":
                continue
            key = (alias, record.shape, filename, lineno, function)
            grouped[key].append(record)
            positions[id(grouped[key])].append(index)
    if not grouped:
        return []
    rows = _row_tags(detection)
    owned = {i: read for read in detection.owned for i in range(read.start, read.end)}
    found = []
    for (alias, _, filename, lineno, function), group in grouped.items():
        described: Described | None
        distinct = len({repr(record.params) for record in group})
        if distinct == 1 and len(group) >= max(threshold, SAME_AGAIN) and _one_text(group):
            described = _describe_repeated(group)
        elif distinct >= threshold:
            described = _describe(group)
        else:
            continue
        if described is None:
            continue
        relation, fix, advice = described[:3]
        if relation.startswith(CACHED_BY_DJANGO):
            continue
        site = f"{relative_path(filename)}:{lineno}"
        finding = NPlusOneFinding(
            kind="n_plus_one",
            relation=relation,
            count=len(group),
            call_site=site if function == "template" else f"{site} in {function}",
            queryset_site=None,
            fix=fix,
            database=alias,
            sample_sql=group[0].sql,
            model=".".join(relation.split(".")[:2]),
            path=".".join(relation.split(".")[2:]),
            advice=advice,
            url=url,
            proof=Proof("unproven", reason=HAND_WRITTEN),
        )
        if distinct == 1:
            finding = _reused(finding, filename, lineno, function == "template")
        elif fix.endswith(BY_KEY):
            finding = _by_key(finding, group, filename, lineno, function == "template")
        tags = [rows.get(index) for index in positions[id(group)]]
        groups = list({id(tag.group): tag.group for tag in tags if tag is not None}.values())
        if len(described) == 4 and groups and None not in tags:
            finding = _placed(finding, groups, described[3], group[0])
        else:
            lone = [owned.get(index) for index in positions[id(group)]]
            finding = with_own_prefetch(finding, lone)
        found.append(finding)
    return found


IN_TEMPLATE = (
    "The loop is in a template: do it in the view (or the template tag) that gives the "
    "template its rows, and pass the result in."
)


def _reused(finding: NPlusOneFinding, filename: str, line: int, template: bool) -> NPlusOneFinding:
    """One read sent again with the same values: proven by answering it at its line (a
    template's too) from its first result, as code that keeps the result would."""
    call = RowCall("reuse", "", "", relative_path(filename), line, module="")
    target = FixTarget(
        "add", row_calls=(call,), model=finding.model, file=call.file, line=call.line
    )
    advice = f"{finding.advice} {IN_TEMPLATE}" if template else finding.advice
    return replace(finding, target=target, proof=None, advice=advice)


def _by_key(
    finding: NPlusOneFinding,
    group: list[QueryRecord],
    filename: str,
    line: int,
    template: bool,
) -> NPlusOneFinding:
    """A read by a unique key per row: proven by answering each from one read of every key
    the run asked for, as ``in_bulk()`` before the loop would (at a template's line too:
    a library's per-row ``get()`` under ``{{ result.object }}``)."""
    model = apps.get_model(finding.model)
    field = model._meta.get_field(finding.path)
    keys: list[Any] = []
    lists = False
    for record in group:
        found = lookup(record.sql, record.vendor, True)
        if found is None or len(found.compared) != len(record.params):
            return finding
        own = [
            value
            for column, value in zip(found.compared, record.params, strict=True)
            if column == (model._meta.db_table, field.column)
        ]
        keys += own
        lists = lists or len(own) > 1
    if not keys:
        return finding
    call = RowCall(
        "bulk", field.attname, "", relative_path(filename), line, module="", keys=tuple(keys)
    )
    target = FixTarget(
        "add", row_calls=(call,), model=finding.model, file=call.file, line=call.line
    )
    advice = (
        f"{finding.advice} Read them with the queryset the per-row read uses (its "
        "conditions and eager loads), as the proof did."
    )
    advice = f"{advice} {IN_TEMPLATE}" if template else advice
    if lists:
        advice = (
            f"{advice} Each row reads a list of keys: take its rows from the dict sorted as "
            f"the query sorts them ({model.__name__}'s Meta.ordering, or its order_by())."
        )
    return replace(finding, target=target, proof=None, advice=advice)


def _row_tags(detection: Detection) -> dict[int, Tag]:
    """The watched row each query of a hand-written per-row call was run for."""
    return {index: tag for start, end, tag in detection.row_calls for index in range(start, end)}


def _placed(
    finding: NPlusOneFinding,
    groups: list[Group],
    row_call: tuple[str, Written, type[Model]],
    record: QueryRecord,
) -> NPlusOneFinding:
    """The finding with its fix on the queryset the rows came from (built at a project line,
    or for a project view or ModelAdmin): the annotation goes there, and a proof reads it
    where the code calls."""
    name, written, outer = row_call
    module = module_of(record.filename or "")
    group = groups[0]
    if not all(issubclass(g.model, outer) for g in groups):
        return finding  # the row found is not what the call compares to: no place for it
    if len(groups) > 1 and not all(g.site is not None and g.model is group.model for g in groups):
        return finding  # several querysets: placed only when project lines built them all
    if not group.from_project or module is None or record.lineno is None:
        return finding
    call = RowCall(
        written.kind,
        name,
        written.value(),
        relative_path(record.filename or ""),
        record.lineno,
        module,
    )
    label = group.model._meta.label
    code = written.annotation(name)
    if group.site is not None:
        file, line, _ = group.site
        places = ((relative_path(g.site[0]), g.site[1]) for g in groups if g.site is not None)
        also = tuple(p for p in dict.fromkeys(places) if p != (relative_path(file), line))
        target = FixTarget(
            "add", row_calls=(call,), model=label, file=relative_path(file), line=line, also=also
        )
    else:
        owner = group.owner
        assert owner is not None
        target = FixTarget(
            "add", row_calls=(call,), model=label, owner=qualname(owner), owner_class=owner
        )
        code = in_owner(owner, group.model, code)
    sites = " and ".join(dict.fromkeys(queryset_site(g) or "" for g in groups))
    return replace(finding, fix=code, queryset_site=sites, target=target, proof=None)


BY_KEY = ".in_bulk(values) before the loop"

SAME_AGAIN = 3
"""How often one query, with the same values, must run from one line to be a loop: twice
is as often two calls of one function (two menus on a page) as two rows."""

CACHED_BY_DJANGO = "contenttypes.ContentType."
"""Content types are looked up once per model and process, then served from Django's own
cache: a first request's lookups are no loop (the next request runs none of them)."""

HAND_WRITTEN = (
    "the code queries once per row by itself; the fix changes that code, so it cannot be "
    "applied to a queryset and re-run"
)


def _uncovered(detection: Detection, total: int) -> Iterator[int]:
    """The log positions of queries no load and no quiet range accounts for. Walked span by
    span, not query by query: an N+1 page's hundreds of loads leave a handful of queries."""
    spans = sorted([(load.start, load.end) for load in detection.loads] + detection.quiet)
    at = 0
    for start, end in spans:
        if start > at:
            yield from range(at, start)
        if end > at:
            at = end
    yield from range(at, total)


def _one_text(group: list[QueryRecord]) -> bool:
    """One statement, not one shape: slices of one query share a shape but not their
    LIMIT/OFFSET, which are no parameters."""
    first = group[0].sql
    return all(record.sql == first for record in group)


def _compared(group: list[QueryRecord]) -> list[dict[Any, tuple[str, ...]]] | None:
    """For each query of ``group``: the values it compares, keyed by the column they are
    compared to (an ``IN`` list is one key, whatever its length), or by their position when
    no column is named. None when a query is not a read this can take apart."""
    lookups: dict[str, Lookup | None] = {}
    compared = []
    for record in group:
        if record.sql not in lookups:
            lookups[record.sql] = lookup(record.sql, record.vendor, True)
        found = lookups[record.sql]
        if found is None or len(found.compared) != len(record.params):
            return None
        values: dict[Any, list[str]] = defaultdict(list)
        pairs = zip(found.compared, record.params, strict=True)
        for position, (column, value) in enumerate(pairs):
            values[column if column is not None else position].append(repr(value))
        compared.append({key: tuple(seen) for key, seen in values.items()})
    return compared


Described = (
    tuple[str, str, str | None] | tuple[str, str, str | None, tuple[str, Written, type[Model]]]
)
"""(relation, fix, advice), and for a per-row call read from its source, (annotation name,
the call rewritten, the model whose rows the call is for)."""


def _describe(group: list[QueryRecord]) -> Described | None:
    """(relation, fix, advice) for a hand-written per-row read, or None if it is not one:
    the values compared to exactly one column change from query to query, and no others."""
    first = group[0]
    found = lookup(first.sql, first.vendor, True)
    compared = _compared(group)
    if found is None or compared is None or any(c.keys() != compared[0].keys() for c in compared):
        return None
    varying = [key for key in compared[0] if len({c[key] for c in compared}) > 1]
    target = varying[0] if len(varying) == 1 else None
    if not isinstance(target, tuple):
        return None
    model = _tables().get(target[0])
    if model is None:
        return None
    field = next((f for f in model._meta.concrete_fields if f.column == target[1]), None)
    if field is None:
        return None
    relation = f"{model._meta.label}.{field.name}"
    constants = {value for key, values in compared[0].items() if key != target for value in values}
    generic = _generic_owner(model, field.name, constants)
    if generic is not None:
        owner, accessor = generic
        return (
            relation,
            f'.prefetch_related("{accessor}") on the {owner.__name__} queryset',
            f"Instead of querying {model.__name__} once per {owner.__name__}; read "
            f"obj.{accessor}.all().",
        )
    if target[0] != found.table:
        selected = _tables().get(found.table)
        name = selected.__name__ if selected is not None else found.table
        return (
            relation,
            f"one {name} query before the loop, filtering {relation} with __in=values",
            "Then look rows up in a dict instead of querying once per row.",
        )
    conditions = len(compared[0]) > 1
    return _describe_column(relation, model, field, found.result, first, conditions)


def _describe_repeated(group: list[QueryRecord]) -> tuple[str, str, str | None] | None:
    """(relation, fix, advice) for one read sent again and again with the same values, or
    None when its table is no model's. Named after the first column it filters on, or after
    the model when it filters on none."""
    first = group[0]
    found = lookup(first.sql, first.vendor, True)
    model = _tables().get(found.table) if found is not None else None
    if found is None or model is None:
        return None
    columns = {f.column: f.name for f in model._meta.concrete_fields}
    named = [
        columns[column[1]]
        for column in found.compared
        if column is not None and column[0] == found.table and column[1] in columns
    ]
    relation = f"{model._meta.label}.{named[0]}" if named else model._meta.label
    return (
        relation,
        f"run this {model.__name__} query once per request, before the loop that runs it, "
        "and reuse its result",
        f"The same query, with the same values, runs {len(group)} times from this line.",
    )


def _describe_column(
    relation: str,
    model: type[Model],
    field: Any,
    result: str,
    record: QueryRecord,
    conditions: bool,
) -> Described:
    """The fix for a per-row read on a column of the table it reads; ``conditions``: the
    read compares other columns too, which its fix must keep."""
    name = model.__name__
    remote = getattr(field, "remote_field", None)
    if remote is not None and field.many_to_one:
        accessor = remote.get_accessor_name()
        query_name = field.related_query_name()
        owner = remote.model.__name__
        written = _written(record, model, field)
        if written is not None:
            named = accessor if accessor and accessor.isidentifier() else model._meta.model_name
            annotated = annotation_name(written, named, remote.model)
            return (
                relation,
                f"{written.annotation(annotated)} on the {owner} queryset",
                f"Then read obj.{annotated} where {record.function} "
                f"({relative_path(record.filename or '')}:{record.lineno}) runs this query "
                f"once per {owner}.",
                (annotated, written, remote.model),
            )
        if result == "count":
            counted = f'Count("{query_name}"' + (", filter=Q(...)" if conditions else "")
            counted += ", distinct=True)"
            return (
                relation,
                f".annotate({accessor}_count={counted}) on the {owner} queryset",
                f"Instead of counting {name} rows once per {owner}"
                + (", with the conditions of the query at this line." if conditions else "."),
            )
        if result == "exists":
            more = ", ..." if conditions else ""
            return (
                relation,
                f".annotate(has_{accessor}=Exists({name}.objects.filter("
                f'{field.name}=OuterRef("pk"){more}))) on the {owner} queryset',
                f"Instead of checking {name} rows once per {owner}.",
            )
        return (
            relation,
            f'.prefetch_related("{accessor}") on the {owner} queryset',
            f"Instead of querying {name} once per {owner}; read obj.{accessor}.all().",
        )
    if field.primary_key or field.unique:
        return (
            relation,
            f"{name}.objects{BY_KEY}",
            f"Or .select_related(...) on the loop's queryset when the {field.name} values "
            "come from a foreign key.",
        )
    return (
        relation,
        f"{name}.objects.filter({field.name}__in=values) before the loop",
        "Then look rows up in a dict instead of querying once per row.",
    )


def _written(record: QueryRecord, model: type[Model], field: Any) -> Written | None:
    """The per-row call at the record's line, read from its source."""
    if record.filename is None or record.lineno is None or record.function == "template":
        return None
    names = frozenset({field.name, field.attname, f"{field.name}__pk", f"{field.name}__id"})
    return read_call(
        record.filename, record.lineno, model=model.__name__, column=field.name, names=names
    )


def _generic_owner(
    model: type[Model], column_field: str, constants: set[str]
) -> tuple[type[Model], str] | None:
    """When ``column_field`` is the object id of a generic foreign key on ``model``: the
    one model, and its relation, that reaches ``model`` through it (a ``GenericRelation``,
    or django-taggit's ``TaggableManager`` through ``model``). Several: the one whose app
    label and model name the query's other parameters name (django-taggit's filter)."""
    if not any(getattr(f, "fk_field", None) == column_field for f in model._meta.private_fields):
        return None
    candidates = []
    for owner in apps.get_models():
        # The many-to-many first: django-taggit adds a GenericRelation to its through
        # model beside the TaggableManager, and the manager is what projects read.
        for relation in (*owner._meta.many_to_many, *owner._meta.private_fields):
            remote = getattr(relation, "remote_field", None)
            generic = getattr(relation, "object_id_field_name", None) == column_field
            if (generic and relation.related_model is model) or (
                getattr(remote, "through", None) is model
            ):
                candidates.append((owner, relation.name))
                break  # one relation per model
    if len(candidates) > 1:
        candidates = [
            (owner, name)
            for owner, name in candidates
            if {repr(owner._meta.app_label), repr(owner._meta.model_name)} <= constants
        ]
    return candidates[0] if len(candidates) == 1 else None


def _tables() -> dict[str, type[Model]]:
    """Each table's model (never a proxy, which shares its concrete model's table)."""
    return {m._meta.db_table: m for m in apps.get_models() if not m._meta.proxy}
