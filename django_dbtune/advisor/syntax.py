"""Small readers of syntax nodes the code scan shares: a class's own assignments, the
strings of a literal list, the keywords inside ``Q(...)`` objects."""

from __future__ import annotations

import ast
from collections.abc import Iterator


def class_assignment(node: ast.ClassDef, name: str) -> ast.Assign | None:
    for statement in node.body:
        if isinstance(statement, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in statement.targets
        ):
            return statement
    return None


def string_items(node: ast.expr) -> list[str]:
    """The strings of a list or tuple literal (a dict's keys, as django-filter allows)."""
    if isinstance(node, ast.List | ast.Tuple):
        items = node.elts
    elif isinstance(node, ast.Dict):
        items = [key for key in node.keys if key is not None]
    else:
        return []
    return [
        item.value
        for item in items
        if isinstance(item, ast.Constant) and isinstance(item.value, str)
    ]


def q_keywords(node: ast.expr) -> Iterator[ast.keyword]:
    """The keyword lookups inside ``Q(...)`` objects combined with ``|``, ``&`` and ``~``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Q":
        yield from node.keywords
    elif isinstance(node, ast.BinOp):
        yield from q_keywords(node.left)
        yield from q_keywords(node.right)
    elif isinstance(node, ast.UnaryOp):
        yield from q_keywords(node.operand)
