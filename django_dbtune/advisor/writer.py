"""Writes the fix: one migration per app and the same indexes in each model's Meta.indexes.

Everything is prepared in memory first; files are written only when every one of them can
be, and restored if writing fails half-way, so a project is never left half-edited.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libcst as cst
from django.apps import apps
from django.db import connections, models
from django.db.migrations import AddIndex, Migration, RunSQL
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.writer import MigrationWriter
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from django_dbtune.advisor.module_names import ModuleNames, module_names, with_import
from django_dbtune.conf import conf
from django_dbtune.edits import write_all
from django_dbtune.errors import WriteError
from django_dbtune.findings import Finding, ProposedIndex
from django_dbtune.project import is_project_file
from django_dbtune.schema import leads_with
from django_dbtune.source_files import read_source

MIGRATION_NAME = "dbtune_indexes"


@dataclass
class PendingWrites:
    """The files ``--write`` would change, not written yet."""

    files: dict[Path, str] = field(default_factory=dict)
    """Each file to write, with its new content."""
    written: list[Finding] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(model label, why nothing was written for it)."""


def index_source(proposal: ProposedIndex, names: ModuleNames | None = None) -> str:
    """The ``models.Index(...)`` to write into a models module, under the names it imports
    (default: ``models``)."""
    if names is None:
        return proposal.as_code(q="models.Q")
    return proposal.as_code(q=names.q, index=names.index, f=names.f)


def prepare(
    findings: Iterable[Finding], *, concurrently: bool = False, runsql: bool = False
) -> PendingWrites:
    """What --write would change, per app and per model source file. MariaDB's prefix index
    of a TEXT column, which ``Meta.indexes`` cannot declare, is written, with ``runsql``, as a
    ``RunSQL`` operation of the app's migration (with the ``DROP INDEX`` that undoes it)."""
    result = PendingWrites()
    by_model: dict[str, list[Finding]] = {}
    raw: dict[str, list[tuple[str, str]]] = {}
    for finding in findings:
        if finding.index is not None and finding.index.sql:
            # A GIN index (trigram or containment), or MariaDB's prefix index of a TEXT
            # column: models.Index cannot declare either.
            # --runsql writes MariaDB's; a GIN index needs an extension migrate may lack.
            model = apps.get_model(finding.model)
            prefix = connections[finding.database].vendor == "mysql"
            reason = (
                _cannot_edit(model)
                if runsql and prefix
                else f"{finding.index.name} cannot be declared in Meta.indexes: run its SQL in "
                f"RunSQL{' (--runsql writes it)' if prefix else ''}"
            )
            if reason is None and _written_already(model, finding.index.name, raw):
                reason = (
                    f"a migration of {model._meta.app_label} creates {finding.index.name} "
                    "already: run migrate"
                )
            if reason is not None:
                result.skipped.append((finding.model, reason))
                continue
            undo = _drop_sql(finding.database, model._meta.db_table, finding.index.name)
            raw.setdefault(model._meta.app_label, []).append((finding.index.sql, undo))
            result.written.append(finding)
        elif finding.index is not None:
            by_model.setdefault(finding.model, []).append(finding)
    by_model = {label: _widest(found) for label, found in by_model.items()}
    by_app: dict[str, list[tuple[type[models.Model], ProposedIndex]]] = {}
    taken = {
        name
        for model in apps.get_models()
        for name in [i.name for i in model._meta.indexes]
        + [c.name for c in model._meta.constraints]
    }
    for label, model_findings in sorted(by_model.items()):
        unique_findings = []
        for finding in model_findings:
            assert finding.index is not None
            if finding.index.name in taken:
                result.skipped.append(
                    (label, f"an index named {finding.index.name} exists already; name it by hand")
                )
            else:
                taken.add(finding.index.name)
                unique_findings.append(finding)
        model_findings = unique_findings
        if not model_findings:
            continue
        proposals = [f.index for f in model_findings if f.index is not None]
        model = apps.get_model(label)
        reason = _cannot_edit(model)
        if reason is None:
            path = Path(inspect.getsourcefile(model) or "")
            source = result.files.get(path) or read_source(path)
            # Code that would not import is refused for the whole run (raised), not skipped.
            names = module_names(
                source,
                _shown(path),
                needs_q=any(p.condition_lookup for p in proposals),
                needs_f=any(p.nulls for p in proposals),
            )
            try:
                edited = add_meta_indexes(
                    source,
                    model.__name__,
                    [index_source(proposal, names) for proposal in proposals],
                    has_parent=_has_model_parent(model),
                )
            except WriteError as exc:
                reason = str(exc)
            else:
                if names.missing_import is not None:
                    edited = with_import(edited, names.missing_import)
                result.files[path] = edited
        if reason is not None:
            result.skipped.append((label, reason))
            continue
        by_app.setdefault(model._meta.app_label, []).extend(
            (model, proposal) for proposal in proposals
        )
        result.written.extend(model_findings)
    loader = MigrationLoader(None, ignore_no_migrations=True)
    for app_label in sorted(by_app.keys() | raw.keys()):
        items = by_app.get(app_label, [])
        path, content = _migration(loader, app_label, items, concurrently, raw.get(app_label, []))
        result.files[path] = content
    return result


def _written_already(
    model: type[models.Model], name: str, raw: dict[str, list[tuple[str, str]]]
) -> bool:
    """Whether this run, or a migration file of the model's app, creates the index ``name``
    already (no model declares it, so only the migrations' text tells)."""
    label = model._meta.app_label
    if any(f"INDEX `{name}`" in sql or f'INDEX "{name}"' in sql for sql, _ in raw.get(label, [])):
        return True
    folder = Path(apps.get_app_config(label).path) / "migrations"
    return any(name in path.read_text(errors="replace") for path in folder.glob("*.py"))


def _drop_sql(database: str, table: str, name: str) -> str:
    """``DROP INDEX`` in the database's own words (``ON table`` on MariaDB and MySQL)."""
    connection = connections[database]
    quote = connection.ops.quote_name
    template = connection.schema_editor(collect_sql=True).sql_delete_index
    return str(template % {"name": quote(name), "table": quote(table)})


def _widest(findings: list[Finding]) -> list[Finding]:
    """Drop a proposal another one of the model serves: equal to it, or a leading prefix."""

    def columns(finding: Finding) -> tuple[str, ...]:
        assert finding.index is not None
        return tuple(name.lstrip("-") for name in finding.index.fields)

    kept: list[Finding] = []
    for finding in sorted(findings, key=lambda f: -len(columns(f))):
        index = finding.index
        assert index is not None
        served = any(
            other.index is not None
            and not index.condition
            and not other.index.condition
            and index.opclasses == other.index.opclasses
            and leads_with(columns(other), columns(finding))
            and set(index.include) <= set(columns(other)) | set(other.index.include)
            for other in kept
        )
        if not served:
            kept.append(finding)
    return kept


def apply(pending: PendingWrites) -> list[Path]:
    """Write every prepared file, or none of them."""
    return write_all(pending.files)


def _shown(path: Path) -> str:
    root = conf.PROJECT_ROOT
    return str(path.relative_to(root) if path.is_relative_to(root) else path)


def _cannot_edit(model: type[models.Model]) -> str | None:
    try:
        source_file = inspect.getsourcefile(model)
    except TypeError:
        source_file = None
    if source_file is None:
        return "its source file cannot be found"
    if not is_project_file(source_file):
        return "it is defined outside the project (in an installed package)"
    return None


def _has_model_parent(model: type[models.Model]) -> bool:
    """Whether ``model`` has a parent model (abstract or not) whose ``Meta`` it may inherit.
    Django keeps no ``Meta`` on a concrete class, so whether the class declares its own is
    read from its source (:func:`add_meta_indexes`)."""
    return any(
        issubclass(base, models.Model) and base is not models.Model for base in model.__bases__
    )


def _migration(
    loader: MigrationLoader,
    app_label: str,
    items: list[tuple[type[models.Model], ProposedIndex]],
    concurrently: bool,
    raw: list[tuple[str, str]],
) -> tuple[Path, str]:
    leaves = loader.graph.leaf_nodes(app_label)
    if len(leaves) > 1:
        raise WriteError(
            f"App {app_label!r} has conflicting migrations {leaves}; run "
            "'manage.py makemigrations --merge' first."
        )
    if app_label not in loader.migrated_apps and not leaves:
        raise WriteError(f"App {app_label!r} has no migrations to add to.")
    number = 1
    if leaves:
        number = (MigrationAutodetector.parse_number(leaves[0][1]) or 0) + 1
    operation: Any = AddIndex
    if concurrently:
        from django.contrib.postgres.operations import AddIndexConcurrently

        operation = AddIndexConcurrently
    attributes = {
        "dependencies": list(leaves),
        "operations": [
            *(operation(model._meta.model_name, proposal.as_index()) for model, proposal in items),
            *(RunSQL(sql, reverse_sql) for sql, reverse_sql in raw),
        ],
    }
    migration_class = type("Migration", (Migration,), attributes)
    migration = migration_class(f"{number:04d}_{MIGRATION_NAME}", app_label)
    writer = MigrationWriter(migration)
    content = writer.as_string()
    if concurrently:
        # Concurrent index builds cannot run inside a transaction.
        header = "class Migration(migrations.Migration):\n"
        content = content.replace(header, header + "    atomic = False\n\n", 1)
    return Path(writer.path), content


# --- Meta.indexes edits --------------------------------------------------------------------


def add_meta_indexes(
    source: str, class_name: str, entries: list[str], *, has_parent: bool = False
) -> str:
    """The source with ``entries`` appended to ``class_name``'s ``Meta.indexes``.

    The CST only locates the places to change; the text around them is left as it was, so
    formatting and comments survive. Meta and indexes are created when absent, except for
    a model with a parent model (``has_parent``): a ``Meta`` declared there would replace
    the one it inherits.
    """
    wrapper = MetadataWrapper(cst.parse_module(source))
    positions = wrapper.resolve(PositionProvider)
    module = wrapper.module
    model_class = next(
        (
            node
            for node in module.body
            if isinstance(node, cst.ClassDef) and node.name.value == class_name
        ),
        None,
    )
    if model_class is None:
        raise WriteError(f"class {class_name} is not defined at the top level of its module")
    lines = source.splitlines(keepends=True)
    body = model_class.body
    if not isinstance(body, cst.IndentedBlock):
        raise WriteError(f"class {class_name} has no indented body to add Meta to")
    unit = body.indent or "    "
    class_indent = " " * positions[model_class].start.column
    meta = next(
        (
            node
            for node in body.body
            if isinstance(node, cst.ClassDef) and node.name.value == "Meta"
        ),
        None,
    )
    if meta is None and has_parent:
        raise WriteError(
            f"{class_name} inherits its Meta from a parent model; declaring Meta here would "
            "drop the parent's options. Add the index by hand."
        )
    if meta is None:
        block = f"{class_indent}{unit}class Meta:\n" + _indexes_assignment(
            class_indent + unit * 2, unit, entries
        )
        # Django's style: fields, then Meta, then methods.
        method = next((node for node in body.body if isinstance(node, cst.FunctionDef)), None)
        if method is not None:
            start = positions[method].start.line
            return "".join(lines[: start - 1]) + block + "\n" + "".join(lines[start - 1 :])
        return _insert_after(lines, positions[model_class], "\n" + block)
    if not isinstance(meta.body, cst.IndentedBlock):
        raise WriteError(f"{class_name}.Meta is written on one line; add the index by hand")
    meta_indent = class_indent + unit + (meta.body.indent or unit)
    assignment = _indexes_value(meta)
    if assignment is None:
        block = _indexes_assignment(meta_indent, unit, entries)
        return _insert_after(lines, positions[meta], block)
    if not isinstance(assignment, cst.List | cst.Tuple):
        raise WriteError(
            f"{class_name}.Meta.indexes is computed, not a list or tuple literal; add the "
            "index by hand"
        )
    span = positions[assignment]
    if isinstance(assignment, cst.Tuple) and assignment.lpar and assignment.rpar:
        # A tuple's own span leaves its parentheses out.
        span = CodeRange(positions[assignment.lpar[0]].start, positions[assignment.rpar[-1]].end)
    inner = meta_indent + unit
    if assignment.elements:
        last = assignment.elements[-1]
        last_end = positions[last.value].end
        before = _offset(lines, last_end.line, last_end.column)
        comma = "" if isinstance(last.comma, cst.Comma) else ","
        text = source
        close = _offset(lines, span.end.line, span.end.column) - 1  # the "]" or ")"
        if span.start.line == span.end.line:
            return text[:before] + "".join(f", {entry}" for entry in entries) + text[before:]
        line_start = text.rfind("\n", 0, close) + 1
        if text[line_start:close].strip():
            # The closer ends the last index's line (a hanging indent): each new index gets
            # a line of its own at that index's column, and the closer stays where it was.
            column = " " * positions[last.value].start.column
            added = "".join(f",\n{column}{entry}" for entry in entries)
            return text[:before] + added + text[before:]
        added = "".join(f"{inner}{entry},\n" for entry in entries)
        head = text[:before] + comma + text[before:line_start]
        return head + added + text[line_start:]
    text = source
    start = _offset(lines, span.start.line, span.start.column)
    end = _offset(lines, span.end.line, span.end.column)
    opener, closer = ("(", ")") if isinstance(assignment, cst.Tuple) else ("[", "]")
    items = "".join(f"{inner}{entry},\n" for entry in entries)
    return text[:start] + opener + "\n" + items + meta_indent + closer + text[end:]


def _indexes_value(meta: cst.ClassDef) -> cst.BaseExpression | None:
    for statement in meta.body.body:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if isinstance(small, cst.Assign) and any(
                    isinstance(target.target, cst.Name) and target.target.value == "indexes"
                    for target in small.targets
                ):
                    return small.value
                if (
                    isinstance(small, cst.AnnAssign)
                    and isinstance(small.target, cst.Name)
                    and small.target.value == "indexes"
                ):
                    return small.value
    return None


def _indexes_assignment(indent: str, unit: str, entries: list[str]) -> str:
    items = "".join(f"{indent}{unit}{entry},\n" for entry in entries)
    return f"{indent}indexes = [\n{items}{indent}]\n"


def _offset(lines: list[str], line: int, column: int) -> int:
    return sum(len(text) for text in lines[: line - 1]) + column


def _insert_after(lines: list[str], span: CodeRange, block: str) -> str:
    """Insert ``block`` on the lines after the node that ends at ``span``."""
    head = "".join(lines[: span.end.line])
    if not head.endswith("\n"):
        head += "\n"
    return head + block + "".join(lines[span.end.line :])
