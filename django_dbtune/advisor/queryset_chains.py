"""Following queryset chains through a module's syntax tree, with ``ast``.

Each chain (``Model.objects.filter(a=1).order_by("-b")``, also through a variable bound to
a queryset, a related manager, or an instance from ``get_object_or_404`` or a ``for`` loop)
becomes one ``Usage``. Nothing is imported or run: the files are parsed. ``scan`` reads every
file of the project this way.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from django.db import models

from django_dbtune.advisor.class_options import class_option_usages
from django_dbtune.advisor.code_scan import Usage, project_files, resolve_path
from django_dbtune.advisor.manager_filters import manager_filters, method_lookups
from django_dbtune.advisor.method_querysets import (
    assumed_querysets,
    is_own_model,
    is_own_queryset,
)
from django_dbtune.advisor.model_names import (
    ModelNames,
    custom_method,
    imported_modules,
    loaded_model,
)
from django_dbtune.advisor.string_constants import Locals, ModuleStrings, ProjectStrings
from django_dbtune.advisor.syntax import (
    QUERYSET_METHODS,
    class_assignment,
    constant_value,
    fetches_one,
    keyword_lookups,
    latest_sort,
    q_keywords,
)
from django_dbtune.call_sites import relative_path
from django_dbtune.lookups import is_lookup, use_of
from django_dbtune.source_files import read_source

INSTANCE_METHODS = frozenset({"get", "first", "last", "earliest", "latest"})


@dataclass
class ScanResult:
    usages: list[Usage] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(file, reason) for files that could not be parsed."""
    notes: list[str] = field(default_factory=list)
    """Call sites left out, and why (``file:line: ...``)."""


def scan(root: Path) -> ScanResult:
    """Every queryset chain in the project's files under ``root`` (``project_files``)."""
    result = ScanResult()
    registry = ModelNames()
    strings = ProjectStrings(root)
    for path in project_files(root):
        try:
            source = read_source(path)
            tree = ast.parse(source, filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
            result.skipped.append((relative_path(str(path)), f"{type(exc).__name__}: {exc}"))
            continue
        lines = source.splitlines()
        own = strings.module(path, tree) or ModuleStrings(strings, path, tree)
        scanner = _Scanner(registry, relative_path(str(path)), lines, own)
        scanner.visit(tree)
        result.usages.extend(scanner.usages)
        result.notes.extend(dict.fromkeys(scanner.notes))
    return result


@dataclass
class _Query:
    model: type[models.Model]
    usage: Usage | None = None
    owned: bool = False
    """Whether ``usage`` belongs to the chain being read; a variable's is copied first."""


class _Scanner(ast.NodeVisitor):
    def __init__(self, registry: ModelNames, file: str, lines: list[str], strings: ModuleStrings):
        self.registry = registry
        self.strings = strings
        self.names: Locals = {}
        """The strings names hold in the function being read (``string_constants``)."""
        self.models: dict[str, type[models.Model]] = {}
        self.modules: dict[str, str] = {}
        """Modules of models the file imported, by local name."""
        self.file = file
        self.lines = lines
        self.usages: list[Usage] = []
        self.querysets: dict[str, _Query] = {}
        self.instances: dict[str, type[models.Model]] = {}
        self.conditions: dict[str, ast.expr] = {}
        """``Q(...)`` objects held in variables (``q = Q(a=1)``, ``q &= Q(b=2)``)."""
        self.loop_depth = 0
        self.resolved: dict[int, _Query | None] = {}
        self.this: type[models.Model] | None = None
        """The model of the class whose method is being read (``self``'s), when known."""
        self.assumed: dict[str, type[models.Model]] = {}
        """Names holding ``self``'s queryset where nothing else binds them."""
        self.unsure: dict[int, str] = {}  # nodes naming an accessor several models have
        self.notes: list[str] = []

    def visit_Module(self, node: ast.Module) -> None:
        # Models the file defines are known everywhere in it, also above their class.
        module = self.file.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        for statement in node.body:
            if isinstance(statement, ast.ClassDef):
                model = self.registry.defined(module, statement.name)
                if model is not None:
                    self.models[statement.name] = model
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        # Imports bind model names where they stand, inside functions too.
        self.models.update(self.registry.imported(node))
        self.modules.update(imported_modules(node, self.registry.modules))

    def visit_Import(self, node: ast.Import) -> None:
        self.modules.update(imported_modules(node, self.registry.modules))

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        model = self._class_model(node)
        saved_names, self.names = self.names, {}  # the class body's names are its own
        # Its methods read the model's queryset through Django's hooks (method_querysets).
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                assumed = dict.fromkeys(assumed_querysets(child), model) if model else {}
                # In a model's own methods, self is one of its rows (self.entry_set.filter).
                self._function(child, model, assumed, self.models.get(node.name))
            else:
                self.visit(child)
        self.names = saved_names
        if model is not None:
            self.usages.extend(class_option_usages(node, model, self.file, self.lines))

    def _class_model(self, node: ast.ClassDef) -> type[models.Model] | None:
        """The model of a view (``queryset = Model.objects...`` or ``model = Model``) or a
        filter set (``class Meta: model = Model``)."""
        queryset = class_assignment(node, "queryset")
        if queryset is not None:
            query = self._query_of(queryset.value)
            if query is not None:
                return query.model
        declared = class_assignment(node, "model")
        if declared is not None and (named := self._model_named(declared.value)) is not None:
            return named
        for statement in node.body:
            if isinstance(statement, ast.ClassDef) and statement.name == "Meta":
                meta = class_assignment(statement, "model")
                if meta is not None:
                    return self._model_named(meta.value)
        return None

    # Scopes: names are tracked per function; a function inside a method keeps its ``self``.
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._function(node, self.this, {})

    visit_AsyncFunctionDef = visit_FunctionDef

    def _function(
        self,
        node: ast.FunctionDef | ast.AsyncFunctionDef,
        this: type[models.Model] | None,
        assumed: dict[str, type[models.Model]],
        row: type[models.Model] | None = None,
    ) -> None:
        saved = (self.querysets, self.instances, self.conditions, self.this, self.assumed)
        saved_names, self.names = self.names, self.strings.parameters(node.args, self.names)
        self.querysets, self.conditions = {}, {}
        self.instances = {"self": row} if row is not None else {}
        self.this, self.assumed = this, assumed
        self.generic_visit(node)
        self.querysets, self.instances, self.conditions, self.this, self.assumed = saved
        self.names = saved_names

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        query = self._query_of(node.iter)
        self.strings.rebind(self.names, [node.target], None)
        if query is not None and isinstance(node.target, ast.Name):
            self.instances[node.target.id] = query.model
        self.loop_depth += 1
        for statement in node.body + node.orelse:
            self.visit(statement)
        self.loop_depth -= 1

    visit_AsyncFor = visit_For

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        self.strings.rebind(self.names, node.targets, node.value)
        if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            return
        name = node.targets[0].id
        self.conditions.pop(name, None)
        if any(q_keywords(node.value)):
            self.conditions[name] = node.value
            return
        loaded = loaded_model(node.value)
        if loaded is not None:
            self.models[name] = loaded
            return
        instance = self._instance_of(node.value)
        query = self._query_of(node.value)
        self.querysets.pop(name, None)
        self.instances.pop(name, None)
        if instance is not None:
            self.instances[name] = instance
        elif query is not None:
            self.querysets[name] = query

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        grown = ast.BinOp(left=node.target, op=node.op, right=node.value)  # key += "__gte"
        self.strings.rebind(self.names, [node.target], grown)
        target = node.target
        if isinstance(target, ast.Name) and target.id in self.conditions:
            combined = ast.BinOp(left=self.conditions[target.id], op=node.op, right=node.value)
            self.conditions[target.id] = combined

    def visit_Subscript(self, node: ast.Subscript) -> None:
        self._query_of(node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self._query_of(node)
        if isinstance(node.func, ast.Name) and node.func.id == "Paginator" and node.args:
            self._mark_list_view(self._query_of(node.args[0]), node)
        self.generic_visit(node)

    # Resolution of expressions to querysets and instances.
    def _instance_of(self, node: ast.expr) -> type[models.Model] | None:
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "get_object_or_404" and node.args:
                query = self._query_of(node.args[0]) or self._manager_of(node.args[0])
                if query is not None:
                    self._record(query, node, filters=node)
                    return query.model
            if isinstance(func, ast.Attribute) and func.attr in INSTANCE_METHODS:
                query = self._query_of(node)
                return query.model if query else None
        return None

    def _manager_of(self, node: ast.expr) -> _Query | None:
        model = self._model_named(node)
        return _Query(model) if model is not None else None

    def _model_named(self, node: ast.expr) -> type[models.Model] | None:
        """The model an expression names: ``Order``, ``models.Order`` through a module
        the file imported, or ``self.model`` in a method of a class whose model is known."""
        if self.this is not None and is_own_model(node):
            return self.this
        if isinstance(node, ast.Name):
            return self.models.get(node.id)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in self.modules
        ):
            return self.registry.in_module(self.modules[node.value.id], node.attr)
        return None

    def _query_of(self, node: ast.expr) -> _Query | None:
        """The queryset an expression builds, recording what it filters and sorts."""
        if isinstance(node, ast.Subscript):
            if id(node) not in self.resolved:
                query = self._query_of(node.value)
                if isinstance(node.slice, ast.Slice):
                    self._mark_list_view(query, node)
                self.resolved[id(node)] = query
            return self.resolved[id(node)]
        if isinstance(node, ast.Name):
            stored = self.querysets.get(node.id)
            if stored is None:
                assumed = self.assumed.get(node.id)
                return _Query(assumed) if assumed is not None else None
            return _Query(stored.model, stored.usage)
        if self.this is not None and is_own_queryset(node):
            return _Query(self.this)  # self.get_queryset() and the like: a chain starts
        if isinstance(node, ast.Attribute):
            base = node.value
            model = self._model_named(base)
            if model is not None:
                return self._managed(model, node.attr, node)
            if isinstance(base, ast.Name) and base.id in self.instances:
                return self._related_manager(self.instances[base.id], node.attr, node)
            owner = self.registry.accessor_owner(node.attr)
            if owner is not None:
                # ``self.entry_set``, ``blog.entries`` of a parameter: an instance of the one
                # model whose reverse foreign key has this name.
                return self._related_manager(owner, node.attr, node)
            if node.attr in self.registry.ambiguous:
                self.unsure[id(node)] = node.attr
            return None
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            return None
        if id(node) in self.resolved:
            return self.resolved[id(node)]
        query = None
        method = node.func.attr
        if method in QUERYSET_METHODS:
            query = self._query_of(node.func.value)
        else:
            # A method of the project's own manager or queryset (``Product.objects.active()``):
            # the chain goes on through it, with what its body filters.
            chained = self._query_of(node.func.value)
            if chained is not None and custom_method(chained.model, method):
                query = _Query(chained.model, chained.usage, chained.owned)
                for key, value, excluded in method_lookups(query.model, method):
                    self._lookup(self._usage(query, node), query.model, key, value, excluded)
        if query is None and method in ("filter", "exclude", "order_by"):
            self._unsure(node)
        if query is not None:
            query = _Query(query.model, query.usage, query.owned)
            if method in {"filter", "exclude", "get", "get_or_create", "update_or_create"}:
                self._record(query, node, filters=node, negated=method == "exclude")
            elif method == "order_by":
                self._record(query, node, sort=node)
            elif method in {"latest", "earliest"}:
                self._latest(query, node, descending=method == "latest")
            elif method in {"count", "exists", "aggregate", "update", "delete"} and query.usage:
                # These run without the default ordering.
                self._usage(query, node).explicit_sort = True
        self.resolved[id(node)] = query
        return query

    def _unsure(self, node: ast.Call) -> None:  # an accessor several models have: said
        if (name := self.unsure.get(id(getattr(node.func, "value", None)))) is not None:
            self.notes.append(f"{self.file}:{node.lineno}: {self.registry.ambiguity(name)}")

    def _managed(self, model: type[models.Model], name: str, node: ast.expr) -> _Query | None:
        """``Model.<manager>``: a chain starts, with what the manager's own
        ``get_queryset`` filters (``Basket.open``: ``status="Open"``)."""
        if not any(manager.name == name for manager in model._meta.managers):
            return None
        query = _Query(model)
        for field_name, lookup, value in manager_filters(model, name):
            self._usage(query, node).add(field_name, lookup, value)
        return query

    def _mark_list_view(self, query: _Query | None, node: ast.expr) -> None:
        """Slicing or paginating evaluates the same query, at no new call site: the usage
        that built it (a variable's included) is marked, not copied. A chain that filtered
        nothing (``Route.objects.all()[:50]``) starts one here: it still sorts."""
        if query is not None:
            usage = query.usage if query.usage is not None else self._usage(query, node)
            usage.list_view = True

    def _related_manager(
        self, model: type[models.Model], accessor: str, node: ast.expr
    ) -> _Query | None:
        for relation in model._meta.related_objects:
            if relation.get_accessor_name() == accessor and relation.one_to_many:
                query = _Query(relation.related_model)
                self._usage(query, node).equality.append((relation.field.name, ...))
                return query
        return None

    def _usage(self, query: _Query, node: ast.AST) -> Usage:
        """The chain's own usage, started (or copied from a variable's) at this line."""
        if not query.owned:
            line = getattr(node, "lineno", 0)
            code = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
            if query.usage is None:
                usage = Usage(query.model, self.file, line, code)
            else:
                usage = query.usage.copy()
                usage.line, usage.code = line, code
            usage.in_loop = usage.in_loop or self.loop_depth > 0
            self.usages.append(usage)
            query.usage, query.owned = usage, True
        assert query.usage is not None
        return query.usage

    def _record(
        self,
        query: _Query,
        node: ast.Call,
        *,
        filters: ast.Call | None = None,
        sort: ast.Call | None = None,
        negated: bool = False,
    ) -> None:
        usage = self._usage(query, node)
        if filters is not None and fetches_one(filters):
            usage.explicit_sort = True  # get() and friends drop the default ordering
        if filters is not None:
            for key, value in keyword_lookups(filters.keywords, self._string):
                self._lookup(usage, query.model, key, value, single=negated)
            for argument in filters.args:
                if isinstance(argument, ast.Name):
                    argument = self.conditions.get(argument.id, argument)
                for key, value in keyword_lookups(list(q_keywords(argument)), self._string):
                    self._lookup(usage, query.model, key, value, True)
        if sort is not None:
            usage.explicit_sort = True
            usage.sort = []
            for argument in sort.args:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    name = argument.value
                    if "__" not in name.lstrip("-") and name.lstrip("-") != "?":
                        usage.sort.append(name)
                else:
                    usage.dynamic_sort = True

    def _latest(self, query: _Query, node: ast.Call, descending: bool) -> None:
        usage = self._usage(query, node)
        usage.explicit_sort = True
        usage.sort = latest_sort(node, query.model, descending)

    def _lookup(
        self, usage: Usage, model: type[models.Model], key: str, value: ast.expr, single: bool
    ) -> None:
        parts = key.split("__")
        lookup = parts.pop() if len(parts) > 1 and is_lookup(parts[-1]) else "exact"
        if use_of(lookup) is None:
            return  # iexact, istartswith, regex...: no index on the bare column serves them
        resolved = resolve_path(model, parts)
        if resolved is None:
            return
        target, name = resolved
        if target is not model:
            usage = Usage(target, usage.file, usage.line, usage.code, in_loop=usage.in_loop)
            self.usages.append(usage)
        usage.add(name, lookup, constant_value(value, self.models), single=single)

    def _string(self, node: ast.expr) -> str | None:
        return self.strings.value(node, self.names)
