"""The string an expression of the project's code holds, told from the source alone: a
literal, an f-string or a ``+`` of known parts, a name bound once to one at a module's top
level or in a class body (``LookupTypes.PARTIAL``), and such a name imported from another
of the project's modules, which is read with ``ast`` too. The code scan reads lookups built
this way (``Q(**{f"value__{lookup}": value})``). Nothing is imported or run: what cannot be
told so (installed code, a value computed at run time) is unknown, None."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

from django_dbtune.project import is_installed_file
from django_dbtune.source_files import read_source

Locals = dict[str, str | None]
"""A function's names: the string each holds, or None when it is bound to something else
(then the module's name of the same spelling is hidden)."""


class ProjectStrings:
    """The project's modules under ``root``, each read once, on demand."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self.read: dict[Path, ModuleStrings | None] = {}
        self.found: dict[tuple[str, int, Path], ModuleStrings | None] = {}
        self.resolving: set[tuple[Path, str]] = set()

    def module(self, path: Path, tree: ast.Module | None = None) -> ModuleStrings | None:
        """The strings of the module at ``path``; None when it is not the project's or
        does not parse."""
        path = Path(os.path.abspath(path))
        if path not in self.read:
            self.read[path] = None
            if self.root in path.parents and not is_installed_file(str(path)):
                try:
                    tree = tree or ast.parse(read_source(path), str(path))
                except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                    return None
                self.read[path] = ModuleStrings(self, path, tree)
        return self.read[path]

    def imported(self, module: str, level: int, importer: Path) -> ModuleStrings | None:
        """The module an import in ``importer`` names (``level`` dots before it), found as
        Python would find its file: beside the importer, else on ``sys.path``."""
        key = (module, level, importer.parent if level else self.root)
        if key not in self.found:
            self.found[key] = self._find(module, level, importer)
        return self.found[key]

    def _find(self, module: str, level: int, importer: Path) -> ModuleStrings | None:
        parts = [part for part in module.split(".") if part]
        if level:
            bases = [importer.parents[level - 1]] if level <= len(importer.parents) else []
        else:
            bases = [Path(entry or os.curdir) for entry in sys.path] + [self.root]
        for base in bases:
            target = base.joinpath(*parts)
            # A package comes before a module of the same name, as Python imports them.
            files = [target / "__init__.py", *([target.with_suffix(".py")] if parts else [])]
            found = next((file for file in files if file.is_file()), None)
            if found is not None:
                return self.module(found)
        return None


class ModuleStrings:
    """The names one module binds at its top level and in its classes' bodies, and the
    names it imports."""

    def __init__(self, project: ProjectStrings, path: Path, tree: ast.Module) -> None:
        self.project = project
        self.path = path
        self.bound: dict[str, ast.expr | None] = {}
        """``NAME`` and ``Class.NAME``: the expression, or None when bound more than once."""
        self.imports: dict[str, tuple[str, int, str | None]] = {}
        """Local name: (module, level, name taken from it; None for ``import a.b as c``)."""
        for statement in tree.body:
            if isinstance(statement, ast.ClassDef):
                for inner in statement.body:
                    self._bind(inner, f"{statement.name}.")
            elif isinstance(statement, ast.ImportFrom):
                for alias in statement.names:
                    local = alias.asname or alias.name
                    self.imports[local] = (statement.module or "", statement.level, alias.name)
            elif isinstance(statement, ast.Import):
                for alias in statement.names:
                    if alias.asname:
                        self.imports[alias.asname] = (alias.name, 0, None)
            else:
                self._bind(statement, "")

    def _bind(self, statement: ast.stmt, prefix: str) -> None:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            return
        if isinstance(target, ast.Name):
            name = prefix + target.id
            # Only what may hold a string is kept (not a model's fields): less to hold on to.
            may_be_text = isinstance(value, _TEXT_SHAPES) and name not in self.bound
            self.bound[name] = value if may_be_text else None

    def value(self, node: ast.expr, names: Locals | None = None) -> str | None:
        """The string ``node`` holds, reading names in ``names`` (a function's) first."""
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.JoinedStr):
            parts = [self._formatted(part, names) for part in node.values]
            return "".join(p for p in parts if p is not None) if None not in parts else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.value(node.left, names), self.value(node.right, names)
            return left + right if left is not None and right is not None else None
        if isinstance(node, ast.Name) and names is not None and node.id in names:
            return names[node.id]
        dotted = _dotted(node)
        return self.name(dotted) if dotted else None

    def parameters(self, arguments: ast.arguments, names: Locals | None = None) -> Locals:
        """A function's parameters: the string each one's default holds (what it is when a
        caller does not say), or None."""
        positional = [*arguments.posonlyargs, *arguments.args]
        defaults: list[ast.expr | None] = [None] * (len(positional) - len(arguments.defaults))
        pairs = [
            *zip(positional, [*defaults, *arguments.defaults], strict=True),
            *zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True),
        ]
        packed = [arg.arg for arg in (arguments.vararg, arguments.kwarg) if arg is not None]
        found: dict[str, str | None] = dict.fromkeys(packed)
        for argument, default in pairs:
            found[argument.arg] = self.value(default, names) if default is not None else None
        return found

    def rebind(self, names: Locals, targets: list[ast.expr], value: ast.expr | None) -> None:
        """What an assignment of ``value`` to ``targets`` does to ``names``: one name holds
        the string ``value`` does (or None); any other name it binds holds None."""
        if len(targets) == 1 and isinstance(targets[0], ast.Name):
            names[targets[0].id] = self.value(value, names) if value is not None else None
            return
        for target in targets:
            for node in ast.walk(target):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names[node.id] = None

    def _formatted(self, part: ast.expr, names: Locals | None) -> str | None:
        if isinstance(part, ast.FormattedValue):
            if part.conversion != -1 or part.format_spec is not None:
                return None
            return self.value(part.value, names)
        return self.value(part, names)

    def name(self, dotted: str) -> str | None:
        """The string ``NAME`` or ``Class.NAME`` holds in this module."""
        key = (self.path, dotted)
        if key in self.project.resolving:
            return None  # a name defined through itself, across modules or not
        self.project.resolving.add(key)
        try:
            return self._name(dotted)
        finally:
            self.project.resolving.discard(key)

    def _name(self, dotted: str) -> str | None:
        if dotted in self.bound:
            expression = self.bound[dotted]
            return self.value(expression) if expression is not None else None
        head, _, rest = dotted.partition(".")
        if head not in self.imports:
            return None
        module, level, taken = self.imports[head]
        if taken is None:  # import a.b as head: head.REST
            source = self.project.imported(module, level, self.path)
            return source.name(rest) if source is not None and rest else None
        source = self.project.imported(module, level, self.path)
        found = source.name(f"{taken}.{rest}" if rest else taken) if source else None
        if found is None and rest:  # from package import submodule: submodule.REST
            submodule = self.project.imported(f"{module}.{taken}", level, self.path)
            found = submodule.name(rest) if submodule is not None else None
        return found


_TEXT_SHAPES = (ast.Constant, ast.JoinedStr, ast.BinOp, ast.Name, ast.Attribute)


def _dotted(node: ast.expr) -> str | None:
    """``NAME`` or ``A.B`` for a name or a chain of attributes of one."""
    path: list[str] = []
    while isinstance(node, ast.Attribute):
        path.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(path)])
