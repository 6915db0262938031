"""Queryset chains in source code, as libcst sees them: ``Book.objects.filter(...)
.order_by(...)``, its links, and the same chain with eager loads or annotations added."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import libcst as cst

from django_dbtune.fix_targets import FixTarget

# Methods of a queryset (and manager) that return a queryset: the links of a chain.
CHAIN_METHODS = frozenset(
    {
        "all",
        "filter",
        "exclude",
        "order_by",
        "select_related",
        "prefetch_related",
        "annotate",
        "alias",
        "defer",
        "only",
        "distinct",
        "reverse",
        "using",
        "extra",
        "none",
        "complex_filter",
        "select_for_update",
        "union",
        "intersection",
        "difference",
    }
)


def chain_link(node: cst.BaseExpression) -> tuple[cst.Call, cst.Attribute] | None:
    """``node`` as (call, method) when it is a link of a queryset chain (``.filter(...)``);
    None for anything else, such as the manager or ``super().get_queryset(request)``."""
    func = node.func if isinstance(node, cst.Call) else None
    if isinstance(func, cst.Attribute) and func.attr.value in CHAIN_METHODS:
        assert isinstance(node, cst.Call)
        return node, func
    return None


def within(inner: cst.CSTNode, outer: cst.BaseExpression) -> bool:
    """``inner`` is a link further down ``outer``'s chain."""
    link = chain_link(outer)
    while link is not None:
        node = link[1].value
        if node is inner:
            return True
        link = chain_link(node)
    return False


def with_loads(chain: cst.BaseExpression, target: FixTarget) -> cst.BaseExpression:
    """``chain`` with the target's paths added to its select_related/prefetch_related
    calls, or new calls right after the manager (valid however the chain goes on)."""
    loads = {"select_related": target.select_related, "prefetch_related": target.prefetch_related}
    present = {name for name in loads if has_link(chain, name)}
    chain = extend_links(chain, {n: p for n, p in loads.items() if n in present and p})
    missing = {n: p for n, p in loads.items() if n not in present and p}
    if missing:
        chain = insert_after_root(chain, missing)
    if target.count_annotations:
        counted = ", ".join(
            f'{n}=Count("{p}", distinct=True)' for n, p in target.counted().items()
        )
        annotate = cst.parse_expression(f"_.annotate({counted})")
        assert isinstance(annotate, cst.Call)
        chain = insert_after_root(chain, {"annotate": ()}, call=annotate)
    return chain


def has_link(chain: cst.BaseExpression, name: str) -> bool:
    link = chain_link(chain)
    while link is not None:
        if link[1].attr.value == name:
            return True
        link = chain_link(link[1].value)
    return False


def extend_links(
    chain: cst.BaseExpression, more: Mapping[str, Sequence[str]]
) -> cst.BaseExpression:
    link = chain_link(chain)
    if link is None:
        return chain
    call, method = link
    inner = extend_links(method.value, more)
    args = list(call.args)
    if method.attr.value in more:
        given = {_string(arg.value) for arg in args}
        args = _comma(args) + [_arg(path) for path in more[method.attr.value] if path not in given]
    return call.with_changes(func=method.with_changes(value=inner), args=_uncomma(args))


def insert_after_root(
    chain: cst.BaseExpression, loads: Mapping[str, Sequence[str]], call: cst.Call | None = None
) -> cst.BaseExpression:
    """New calls right after the manager: ``.name(paths)`` for each of ``loads``, or
    ``call`` with the manager in place of its ``_``."""
    link = chain_link(chain)
    if link is None:
        for name, paths in loads.items():
            if call is not None:
                assert isinstance(call.func, cst.Attribute)
                chain = call.with_changes(func=call.func.with_changes(value=chain))
                continue
            args = _uncomma([_arg(path) for path in paths])
            chain = cst.Call(func=cst.Attribute(value=chain, attr=cst.Name(name)), args=args)
        return chain
    outer, method = link
    inner = insert_after_root(method.value, loads, call)
    return outer.with_changes(func=method.with_changes(value=inner))


def _string(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _arg(path: str) -> cst.Arg:
    return cst.Arg(cst.SimpleString(f'"{path}"'))


def _comma(args: list[cst.Arg]) -> list[cst.Arg]:
    """Every argument followed by a comma, so that more can follow."""
    return [
        arg.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        if arg.comma is cst.MaybeSentinel.DEFAULT
        else arg
        for arg in args
    ]


def _uncomma(args: list[cst.Arg]) -> list[cst.Arg]:
    """Commas between arguments, none after the last."""
    if not args:
        return args
    last = args[-1]
    if isinstance(last.comma, cst.Comma) and not _multiline(last.comma):
        last = last.with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return [*_comma(args[:-1]), last]


def _multiline(comma: cst.Comma) -> bool:
    return isinstance(comma.whitespace_after, cst.ParenthesizedWhitespace)


class Replace(cst.CSTTransformer):
    def __init__(self, old: cst.CSTNode, new: cst.CSTNode) -> None:
        self.old = old
        self.new = new

    def on_leave(self, original: cst.CSTNode, updated: cst.CSTNode) -> cst.CSTNode:  # type: ignore[override]
        return self.new if original is self.old else updated
