"""An N+1 fix as data: what to change on which queryset (:class:`FixTarget`), and the
per-row calls a fix answers once for every row (:class:`RowCall`). Proofs apply it
in-process; the codemod writes it into the source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class RowCall:
    """A per-row ``count()``, ``exists()`` or ``aggregate()`` call at ``file:line`` (as
    findings show files), and the annotation ``name = expression`` that answers it for
    every row at once; or (kind ``rows``) a filtered read of a related manager and the
    ``Prefetch(path, queryset=expression, to_attr=name)`` whose list answers it; or (kind
    ``reuse``) one read sent again with the same values, answered by its first result; or
    (kind ``bulk``) a read by key ``name`` per row, answered from one read of every key; or
    (kind ``own``) a read the rows' model answers from its own ``to_attr`` ``name`` when
    ``Prefetch(path, queryset=expression, to_attr=name)`` filled it (``file:line`` is that
    method), which replaces a plain prefetch of ``path``.
    ``module`` is where the expression's names are defined: the call's own chain (empty
    for ``reuse`` and ``bulk``, which have no expression)."""

    kind: Literal["count", "exists", "aggregate", "rows", "own", "reuse", "bulk"]
    name: str
    expression: str
    file: str
    line: int
    module: str
    path: str = ""
    picks: tuple[tuple[str, str, bool], ...] = ()
    """A read that picks rows by the code's values: (attname, name, relation) per condition."""
    keys: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    """For ``bulk``: the keys the run read one by one (what the code collects first)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "expression": self.expression,
            "file": self.file,
            "line": self.line,
            "path": self.path,
            "picks": [list(pick) for pick in self.picks],
        }


@dataclass(frozen=True)
class FixTarget:
    """An N+1 fix as data: what to change on which queryset, for a proof or a codemod.

    The queryset is the one built at ``file:line`` (relative to the project, as findings
    show files) or, when Django builds it, the one of the project class ``owner``. For a
    ModelAdmin, ``list_select_related`` is the whole tuple the attribute must hold.
    """

    action: Literal["add", "remove"]
    select_related: tuple[str, ...] = ()
    prefetch_related: tuple[str, ...] = ()
    list_select_related: tuple[str, ...] | None = None
    names_bare_select: bool = False
    """The queryset calls ``select_related()`` with no names, which overrides named ones:
    ``select_related`` is what that call must name instead (its own joins included)."""
    count_annotations: tuple[str, ...] = ()
    """Related managers counted per row: ``.annotate(<name>_count=Count("<name>"))`` on the
    queryset, and each row's ``.<name>.count()`` read as ``.<name>_count`` instead."""
    count_site: str | None = None
    """Where each row's count is read (``file:line in function``), when that is not the
    finding's own trigger (another relation's load came first on the page)."""
    count_paths: tuple[str, ...] = ()
    """What ``Count()`` names for each of ``count_annotations``: the relation as queries
    spell it (``review`` for the default accessor ``review_set``); empty: the names as they
    are."""
    specific_select: tuple[str, ...] = ()
    """Relations of the rows' own subclasses, joined by the queries that load them:
    ``select_related(..., for_specific_subqueries=True)`` on a queryset whose rows are
    subclasses (Wagtail's ``.specific()``)."""
    specific_prefetch: tuple[str, ...] = ()
    """The same for ``prefetch_related(..., for_specific_subqueries=True)``."""
    generic_prefetch: tuple[tuple[str, str, str, str], ...] = ()
    """``(lookup, "app_label.Model", relation, method)``: ``GenericPrefetch(lookup,
    [Model.objects.<method>(relation)])``, an eager load for the rows of one type behind a
    generic foreign key (rows of other types are prefetched as before)."""
    row_calls: tuple[RowCall, ...] = ()
    """Counts, ``exists()`` or aggregates the code runs once per row, each turned into an
    annotation on the queryset; a proof reads it where the code calls (a person changes
    that code)."""
    file: str | None = None
    line: int | None = None
    in_template: bool = False
    """``file:line`` is a template's line that builds and runs the queryset (a related
    manager's chain it calls, ``{% for r in product.reviews.approved %}``): the fix goes on
    the queryset run there, which a person moves to the view."""
    in_subclass: bool = False
    """``owner`` is an installed class (a CMS's own listing view): the fix goes in a
    subclass of it, which the project uses in its place."""
    also: tuple[tuple[str, int], ...] = ()
    """More ``(file, line)`` places that get the same change: hand-written per-row calls
    made for the rows of several querysets (three ticket lists on one dashboard)."""
    owner: str | None = None
    """``"module.Qualname"`` of the view or ModelAdmin whose queryset it is."""
    model: str | None = None
    """``"app_label.Model"`` of the queryset: a line or a class may build several."""
    owner_class: type | None = field(default=None, compare=False, repr=False)
    """The class itself (it may not be importable by name: one defined in a function)."""

    def counted(self) -> dict[str, str]:
        """``{"<name>_count": what Count() names}`` for each of ``count_annotations``."""
        paths = self.count_paths or self.count_annotations
        pairs = zip(self.count_annotations, paths, strict=True)
        return {f"{name}_count": path for name, path in pairs}

    @property
    def place(self) -> tuple[str | None, int | None, str | None]:
        """Findings with the same place are fixed by one change."""
        return (self.file, self.line, self.owner)

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "select_related": list(self.select_related),
            "prefetch_related": list(self.prefetch_related),
            "list_select_related": (
                list(self.list_select_related) if self.list_select_related is not None else None
            ),
            "count_annotations": list(self.count_annotations),
            "specific_select": list(self.specific_select),
            "specific_prefetch": list(self.specific_prefetch),
            "generic_prefetch": [list(load) for load in self.generic_prefetch],
            "row_calls": [call.as_dict() for call in self.row_calls],
            "file": self.file,
            "line": self.line,
            "in_template": self.in_template,
            "in_subclass": self.in_subclass,
            "also": [list(place) for place in self.also],
            "owner": self.owner,
            "model": self.model,
        }
