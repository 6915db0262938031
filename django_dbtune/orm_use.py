"""What an ORM query filters and sorts by, read from Django's own ``Query`` as it runs.

The workload recorder notes this for each SELECT (``OrmUse``), so the index advisor works
from the ORM's fields rather than from parsing SQL back into them. The lookup vocabulary
(which lookups an index serves) is ``lookups.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from django.db.models import F, Model
from django.db.models.expressions import Col, OrderBy
from django.db.models.lookups import Lookup
from django.db.models.sql.compiler import SQLCompiler
from django.db.models.sql.where import AND, WhereNode

from django_dbtune.lookups import CASE_INSENSITIVE, Use, use_of

__all__ = ["OrmUse", "compiler_of", "describe", "equal_values"]


@dataclass
class OrmUse:
    """What an ORM query filters and sorts by, in field names of its model."""

    model: str
    equality: list[str] = field(default_factory=list)
    ranges: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    contains: list[tuple[str, bool]] = field(default_factory=list)
    single: list[str] = field(default_factory=list)
    """Filtered where a composite index cannot help (under OR or NOT)."""
    sort: list[str] = field(default_factory=list)
    explicit_sort: bool = False
    sliced: bool = False
    selects: list[str] | None = None
    """The fields a ``values()``/``values_list()`` query reads (None: whole rows), which a
    covering index can hold for an index-only scan."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "equality": self.equality,
            "ranges": self.ranges,
            "patterns": self.patterns,
            "contains": [list(item) for item in self.contains],
            "single": self.single,
            "sort": self.sort,
            "explicit_sort": self.explicit_sort,
            "sliced": self.sliced,
            "selects": self.selects,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrmUse:
        return cls(
            model=str(data["model"]),
            equality=[str(x) for x in data.get("equality", [])],
            ranges=[str(x) for x in data.get("ranges", [])],
            patterns=[str(x) for x in data.get("patterns", [])],
            contains=[(str(name), bool(i)) for name, i in data.get("contains", [])],
            single=[str(x) for x in data.get("single", [])],
            sort=[str(x) for x in data.get("sort", [])],
            explicit_sort=bool(data.get("explicit_sort", False)),
            sliced=bool(data.get("sliced", False)),
            selects=[str(x) for x in data["selects"]] if data.get("selects") else None,
        )


# --- Reading the ORM's own query -------------------------------------------------------------

_EXECUTE_SQL = SQLCompiler.execute_sql.__code__


def compiler_of(frame: FrameType | None) -> SQLCompiler | None:
    """The SELECT compiler running this statement, found a few frames up."""
    for _ in range(12):
        if frame is None:
            return None
        if frame.f_code is _EXECUTE_SQL:
            compiler = frame.f_locals.get("self")
            return compiler if isinstance(compiler, SQLCompiler) else None
        frame = frame.f_back
    return None


def describe(query: Any) -> OrmUse | None:
    """The fields ``query`` filters (by kind of lookup) and sorts by, on its own model."""
    model: type[Model] | None = query.model
    if model is None:
        return None
    # A proxy's query reads its concrete model's table: the fields are that model's.
    model = model._meta.concrete_model or model
    use = OrmUse(model._meta.label)
    _walk(query.where, model, use, composite=True)
    ordering = list(query.order_by)
    # Known, not Meta.ordering's: a sort given, or none at all where Django dropped the
    # default ordering (get(), count(), exists(), a subquery).
    use.explicit_sort = bool(ordering) or not query.default_ordering
    if not ordering and query.default_ordering:
        ordering = list(model._meta.ordering or ())
    pk = model._meta.pk.name if model._meta.pk else "id"
    columns = {f.name for f in model._meta.concrete_fields}
    for item in ordering:
        name = _sort_name(item, pk)
        if name is None or name.lstrip("-") not in columns:
            break  # a sort an index cannot follow (an annotation, a join): stop there
        use.sort.append(name)
    use.sliced = query.high_mark is not None
    selected = list(query.values_select)
    if selected and not query.annotations and not query.extra and "__" not in "".join(selected):
        use.selects = [pk if name == "pk" else name for name in selected]
    return use


def equal_values(query: Any) -> dict[str, Any]:
    """The plain values ``query`` compares its own model's fields to with ``exact``, at its
    top level (what a partial index condition could be)."""
    model = query.model
    where = query.where
    if model is None or where.connector != AND or where.negated:
        return {}
    values: dict[str, Any] = {}
    for child in where.children:
        if (
            isinstance(child, Lookup)
            and child.lookup_name == "exact"
            and isinstance(child.lhs, Col)
            and child.lhs.target.model is model
            and type(child.rhs) in (str, int, float, bool)
        ):
            values[child.lhs.target.name] = child.rhs
    return values


def _sort_name(item: Any, pk: str) -> str | None:
    if isinstance(item, OrderBy) and isinstance(item.expression, F):
        name, descending = str(getattr(item.expression, "name", "")), item.descending
    elif isinstance(item, str) and item != "?":
        name, descending = item.lstrip("-"), item.startswith("-")
    else:
        return None
    if not name or "__" in name:
        return None
    name = pk if name == "pk" else name
    return f"-{name}" if descending else name


def _walk(node: Any, model: type[Model], use: OrmUse, composite: bool) -> None:
    if isinstance(node, WhereNode):
        composite = composite and node.connector == AND and not node.negated
        if node.connector != AND and len(node.children) == 1:
            composite = composite and not node.negated
        for child in node.children:
            _walk(child, model, use, composite)
        return
    if not isinstance(node, Lookup) or not isinstance(node.lhs, Col):
        return
    target = node.lhs.target
    if target.model is not model:
        return  # another table's column: a relation's, or a parent model's (inheritance)
    name = target.name
    lookup = str(node.lookup_name)
    served = use_of(lookup)
    if served is Use.CONTAINS:
        use.contains.append((name, lookup in CASE_INSENSITIVE))
    elif served is None:
        return
    elif not composite:
        use.single.append(name)
    elif served is Use.EQUALITY:
        use.equality.append(name)
    elif served is Use.RANGE:
        use.ranges.append(name)
    else:
        use.patterns.append(name)
