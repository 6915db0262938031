"""A per-row read that the rows' model guards with a prefetch attribute of its own.

django-oscar's ``Product.get_public_children()`` returns ``self._prefetched_public_children``
when a ``Prefetch("children", ..., to_attr="_prefetched_public_children")`` filled it, and
runs ``self.children.public()`` otherwise. A plain ``prefetch_related("children")`` fills
nothing that method reads, so the page queries once per row whatever is prefetched. The fix
is the prefetch the method looks for, on the queryset the rows came from, in place of the
plain one; a proof runs the page with it before it is offered.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from django.apps import apps
from django.db.models import Model
from django.db.models.constants import LOOKUP_SEP

from django_dbtune.call_sites import relative_path
from django_dbtune.findings import NPlusOneFinding
from django_dbtune.fix_targets import FixTarget, RowCall
from django_dbtune.nplusone.per_row_source import parsed_source
from django_dbtune.nplusone.relations import relation_field
from django_dbtune.nplusone.state import Owned


@dataclass(frozen=True)
class Guarded:
    """A method that reads ``self.<to_attr>`` when it is set, ``self.<relation>.<chain>()``
    otherwise."""

    method: str
    to_attr: str
    chain: tuple[str, ...]
    """Methods called without arguments on the related manager (``("public",)``)."""
    file: str
    line: int


def with_own_prefetch(finding: NPlusOneFinding, reads: list[Owned | None]) -> NPlusOneFinding:
    """``finding`` (a per-row read no fix was placed for) with the fix its rows' model asks
    for, when each query was a related manager's read for one project row, and one method of
    that row's class guards that relation with a prefetch attribute; else as it was."""
    if finding.target is not None or not reads or None in reads:
        return finding
    eager = {read.eager for read in reads if read is not None}
    if len(eager) != 1 or None in eager:
        return finding  # the reads load different relations, or ones no text can say
    groups = list({id(r.tag.group): r.tag.group for r in reads if r is not None}.values())
    group = groups[0]
    sites = {g.site[:2] for g in groups if g.site is not None}
    if len(sites) != 1 or any(g.site is None or g.model is not group.model for g in groups):
        return finding  # one line built every row's queryset, or no place for one fix
    field = relation_field(apps.get_model(finding.model), finding.path)
    remote = getattr(field, "remote_field", None)
    if field is None or not field.many_to_one or remote is None:
        return finding
    if not issubclass(group.model, remote.model):
        return finding
    accessor = remote.get_accessor_name()
    guarded = guarded_read(group.model, accessor)
    if guarded is None:
        return finding
    related: type[Model] = field.model
    manager = related._default_manager.name
    calls = "".join(f".{name}()" for name in guarded.chain) or ".all()"
    kept = eager.pop() or ""
    expression = f"{related.__name__}.{manager}{calls}{kept}"
    prefetch = f'Prefetch("{accessor}", queryset={expression}, to_attr="{guarded.to_attr}")'
    call = RowCall(
        "own",
        guarded.to_attr,
        expression,
        guarded.file,
        guarded.line,
        module=related.__module__,
        path=accessor,
    )
    assert group.site is not None
    file, line, _ = group.site
    label = group.model._meta.label
    target = FixTarget("add", row_calls=(call,), model=label, file=relative_path(file), line=line)
    plain = accessor in group.plain_prefetches
    fix = (
        f'{prefetch} in place of "{accessor}" in .prefetch_related(...)'
        if plain
        else f".prefetch_related({prefetch})"
    )
    advice = (
        f"{group.model.__name__}.{guarded.method}() ({guarded.file}:{guarded.line}) reads "
        f"self.{guarded.to_attr} when a prefetch filled it and queries once per row "
        f"otherwise: give its rows that prefetch."
    )
    if plain:
        advice += f' A plain "{accessor}" prefetch fills nothing that method reads.'
    if kept:
        advice += " Its queryset keeps the eager loads the per-row read had."
    return replace(
        finding,
        fix=fix,
        advice=advice,
        queryset_site=f"{relative_path(file)}:{line}",
        target=target,
        proof=None,
    )


def eager_loads(queryset: Any) -> str | None:
    """The queryset's ``select_related``/``prefetch_related`` calls as code ("" for none);
    None for what text cannot say (a ``Prefetch`` object, a bare ``select_related()``)."""
    select = queryset.query.select_related
    lookups = queryset._prefetch_related_lookups
    if select is True or not all(isinstance(lookup, str) for lookup in lookups):
        return None
    text = ""
    if select:
        text += f".select_related({_quoted(_paths(select))})"
    if lookups:
        text += f".prefetch_related({_quoted(lookups)})"
    return text


def _quoted(paths: Iterable[str]) -> str:
    return ", ".join(f'"{path}"' for path in paths)


def _paths(tree: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """The deepest paths of a ``select_related`` tree: each names the joins before it."""
    for name, sub in tree.items():
        if sub:
            yield from _paths(sub, f"{prefix}{name}{LOOKUP_SEP}")
        else:
            yield prefix + name


def guarded_read(model: type[Model], relation: str) -> Guarded | None:
    """The one method of ``model``'s classes (its own and its abstract bases) that reads a
    prefetch attribute for ``relation``: ``hasattr(self, "<name>")`` or ``getattr(self,
    "<name>", ...)``, and ``self.<relation>`` followed by calls without arguments."""
    found = {(g.to_attr, g.chain): g for g in _guarded_reads(model, relation)}
    if len(found) != 1:
        return None
    guarded = next(iter(found.values()))
    # A name the class has already (a field, "pk", a property) is no prefetch attribute.
    return None if hasattr(model, guarded.to_attr) else guarded


def _guarded_reads(model: type[Model], relation: str) -> Iterator[Guarded]:
    for cls in model.__mro__:
        if cls is Model or not issubclass(cls, Model) or cls.__module__.startswith("django."):
            continue
        try:
            filename = inspect.getsourcefile(cls)
        except (OSError, TypeError):  # a class with no source file (one built in a shell)
            continue
        read = parsed_source(filename) if filename else None
        if read is None or filename is None:
            continue
        for node in ast.walk(read[1]):
            if not (isinstance(node, ast.ClassDef) and node.name == cls.__name__):
                continue
            for method in node.body:
                if isinstance(method, ast.FunctionDef) and method.args.args:
                    yield from _guarded(method, relation, relative_path(filename))


def _guarded(method: ast.FunctionDef, relation: str, file: str) -> Iterator[Guarded]:
    me = method.args.args[0].arg
    names = {name for node in ast.walk(method) if (name := _guard_name(node, me)) is not None}
    if len(names) != 1:
        return
    name = names.pop()
    reads_it = any(_is_own(node, me, name) for node in ast.walk(method))
    chains = set(_chains(method, me, relation))
    if (reads_it or _is_getattr(method, me, name)) and len(chains) == 1:
        chain = chains.pop()
        if chain is not None:
            yield Guarded(method.name, name, chain, file, method.lineno)


def _chains(method: ast.FunctionDef, me: str, relation: str) -> Iterator[tuple[str, ...] | None]:
    """For each ``self.<relation>`` in the method, the calls without arguments made on it,
    or None when anything else follows (a filter with arguments, a slice, an attribute):
    what the method returns then is not what a ``Prefetch`` of that chain holds."""
    parents = {child: node for node in ast.walk(method) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(method):
        if not _is_own(node, me, relation):
            continue
        calls: list[str] = []
        top: ast.AST = node
        while True:
            method_of = parents.get(top)
            call = parents.get(method_of) if method_of is not None else None
            if not (
                isinstance(method_of, ast.Attribute)
                and isinstance(call, ast.Call)
                and call.func is method_of
            ):
                break
            if call.args or call.keywords:
                calls = []  # a call with arguments: not a chain a Prefetch holds
                break
            calls.append(method_of.attr)
            top = call
        above = parents.get(top)
        if not calls or isinstance(above, ast.Attribute | ast.Subscript | ast.Call):
            yield None
        else:
            yield tuple(calls)


def _is_own(node: ast.AST, me: str, name: str) -> bool:
    """``node`` is ``self.<name>``."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == name
        and isinstance(node.value, ast.Name)
        and node.value.id == me
    )


def _is_getattr(method: ast.FunctionDef, me: str, name: str) -> bool:
    """The guard is ``getattr(self, "<name>", default)``, which reads it too."""
    return any(
        _guard_name(node, me) == name and node.func.id == "getattr"  # type: ignore[attr-defined]
        for node in ast.walk(method)
    )


def _guard_name(node: ast.AST, me: str) -> str | None:
    """``name`` of ``hasattr(self, "name")`` or ``getattr(self, "name", default)``."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return None
    wanted = {"hasattr": 2, "getattr": 3}.get(node.func.id)
    if wanted is None or len(node.args) != wanted or node.keywords:
        return None
    owner, name = node.args[:2]
    if not (isinstance(owner, ast.Name) and owner.id == me):
        return None
    if isinstance(name, ast.Constant) and isinstance(name.value, str):
        return name.value
    return None
