"""Where the methods of a class whose model is known hold that model's queryset, by the
conventions of Django and the libraries built on it, read from syntax. The class is a view
(``model = Model``, ``queryset = Model.objects...``) or a filter set, table or form
(``class Meta: model = Model``); inside its methods:

- ``self.model`` is the model;
- ``self.queryset``, ``self.get_queryset()`` and ``super().get_queryset()`` are its queryset;
- a parameter named ``queryset`` is its queryset: the name django-filter's ``method``
  filters, Django REST framework's ``filter_queryset`` and django-tables2's ``order_FOO``
  give the queryset they hand over, and views' own helpers follow;
- what ``get_queryset`` returns is its queryset (the generic views' contract), so a name it
  returns is one wherever nothing else says what it holds: also after
  ``queryset = sort_queryset(queryset, request)``, a call the scan does not read.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

QUERYSET_PARAMETER = "queryset"


def assumed_querysets(method: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """The names that hold the class's queryset throughout ``method`` where nothing else
    binds them: its ``queryset`` parameter, and in ``get_queryset`` the names it returns."""
    arguments = method.args
    names = {
        argument.arg
        for argument in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)
        if argument.arg == QUERYSET_PARAMETER
    }
    if method.name == "get_queryset":
        names.update(
            statement.value.id
            for statement in _own_statements(method)
            if isinstance(statement, ast.Return) and isinstance(statement.value, ast.Name)
        )
    return names


def is_own_queryset(node: ast.expr) -> bool:
    """``self.queryset``, ``self.get_queryset()`` or ``super().get_queryset()``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "get_queryset" and (
            _is_self(node.func.value) or _is_super(node.func.value)
        )
    return isinstance(node, ast.Attribute) and node.attr == "queryset" and _is_self(node.value)


def is_own_model(node: ast.expr) -> bool:
    """``self.model``."""
    return isinstance(node, ast.Attribute) and node.attr == "model" and _is_self(node.value)


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _is_super(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and getattr(node.func, "id", None) == "super"


def _own_statements(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """The nodes of ``function``'s body, not those of functions or classes inside it."""
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            pending.extend(ast.iter_child_nodes(node))
