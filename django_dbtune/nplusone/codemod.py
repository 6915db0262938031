"""Writing proven N+1 fixes into the project's source, with libcst (formatting and comments
kept): the eager loads go into the queryset chain that the finding names, into an existing
``queryset`` attribute or ``get_queryset``, or into a ModelAdmin's ``list_select_related``;
a method or attribute is added only when the class has none."""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import MetadataWrapper, PositionProvider

from django_dbtune.conf import conf
from django_dbtune.findings import NPlusOneFinding
from django_dbtune.fix_targets import FixTarget
from django_dbtune.nplusone.chains import Replace, chain_link, has_link, with_loads, within
from django_dbtune.nplusone.fixes import chain as chain_code
from django_dbtune.nplusone.homes import fix_home
from django_dbtune.nplusone.import_order import where_isort_puts
from django_dbtune.nplusone.partial_fixes import other_actions, without_counts
from django_dbtune.source_files import read_source


class Unrecognised(Exception):
    """The code at the fix site is not a shape the codemod edits."""


@dataclass
class Edits:
    """What ``--write`` would change, not written yet."""

    files: dict[Path, str] = field(default_factory=dict)
    written: list[tuple[NPlusOneFinding, str]] = field(default_factory=list)
    """Each finding applied, with where: ``shop/views.py:12``."""
    skipped: list[tuple[NPlusOneFinding, str]] = field(default_factory=list)
    """Each finding left alone, with why."""


def plan(findings: Iterable[NPlusOneFinding], since: float) -> Edits:
    """The source edits for the proven N+1 fixes among ``findings``. A file modified after
    ``since`` (a time stamp: when the pages ran) is left alone, as its lines may have moved."""
    edits = Edits()
    written: list[tuple[NPlusOneFinding, Path, int | type]] = []
    for finding in findings:
        target = finding.target
        if finding.kind != "n_plus_one" or target is None or target.action != "add":
            continue
        if finding.proof is None or finding.proof.verdict != "proven":
            edits.skipped.append((finding, "its fix is not proven"))
            continue
        if target.specific_select or target.specific_prefetch:
            reason = "--write does not edit for_specific_subqueries loads yet: paste the fix"
            edits.skipped.append((finding, reason))
            continue
        if target.generic_prefetch:
            reason = "--write does not edit GenericPrefetch loads yet: paste the fix"
            edits.skipped.append((finding, reason))
            continue
        if target.in_subclass:
            reason = (
                "the fix goes in a subclass of an installed class, which the project then "
                "uses in its place: paste the fix"
            )
            edits.skipped.append((finding, reason))
            continue
        if target.in_template:
            reason = (
                "the template builds the queryset: build it in the view with the fix and pass "
                "it to the template"
            )
            edits.skipped.append((finding, reason))
            continue
        if any(call.kind == "own" for call in target.row_calls):
            reason = "--write does not edit Prefetch(..., to_attr=...) loads yet: paste the fix"
            edits.skipped.append((finding, reason))
            continue
        if target.row_calls:
            reason = (
                "the code that reads per row must change to read what the fix adds: paste "
                "the fix and change that code"
            )
            edits.skipped.append((finding, reason))
            continue
        before = dict(edits.files)
        try:
            path, where = _apply(target, finding, edits, since)
        except (Unrecognised, OSError, cst.ParserSyntaxError) as exc:
            edits.files = before  # all of a fix or none of it
            rest = without_counts(finding)
            if target.count_annotations and rest is not None:
                # The count's reading line cannot be edited (a serializer method's, say):
                # the eager loads are written, the count is left to the person.
                try:
                    path, where = _apply(rest.target, rest, edits, since)  # type: ignore[arg-type]
                except (Unrecognised, OSError, cst.ParserSyntaxError):
                    edits.files = before
                    edits.skipped.append((finding, str(exc)))
                    continue
                edits.skipped.append((finding, f"{exc}; the count is not written, the rest is"))
                written.append((rest, path, where))
                continue
            edits.skipped.append((finding, str(exc)))
            continue
        written.append((finding, path, where))
    # Each place as the written file has it (a later fix may have moved its line).
    for finding, path, where in written:
        place = _shown(path)
        if isinstance(where, int):
            place = f"{place}:{_line_now(path, where, edits)}"
        edits.written.append((finding, place))
    return edits


def _apply(
    target: FixTarget, finding: NPlusOneFinding, edits: Edits, since: float
) -> tuple[Path, int | type]:
    """Put ``target`` into ``edits`` (the rows' reads of its counts too): the file and the
    line or class it went into."""
    path, where = _locate(target)
    _check_unchanged(path, since)
    actions = other_actions(target) if target.count_annotations else []
    if actions:
        raise Unrecognised(
            f"the viewset's queryset serves its actions {', '.join(actions)} too, whose "
            "aggregates its annotation would change: put the count where only this page "
            "reads it"
        )
    if target.count_annotations:
        read_path, line = _read_site(finding)
        _check_unchanged(read_path, since)
        source = edits.files.get(read_path) or read_source(read_path)
        line = _line_now(read_path, line, edits)
        edits.files[read_path] = _edit_reads(source, line, target.count_annotations)
    source = edits.files.get(path) or read_source(path)
    if isinstance(where, int):
        line = _line_now(path, where, edits)
    else:
        line = _line_now(path, inspect.getsourcelines(where)[1], edits)
    edits.files[path] = _edit(source, target, where, line)
    return path, where


def _line_now(path: Path, line: int, edits: Edits) -> int:
    """Where ``line`` of ``path`` as the pages ran it is in the edits made so far: an earlier
    fix in the same file (an import at the top, a method added) moves the lines after it."""
    edited = edits.files.get(path)
    if edited is None:
        return line
    original = read_source(path).splitlines()
    matcher = difflib.SequenceMatcher(None, original, edited.splitlines(), autojunk=False)
    for _, start, end, new_start, new_end in matcher.get_opcodes():
        if start <= line - 1 < end:
            # The same line, or, where a fix rewrote a block, the line as far into it
            # (what is edited there is checked again: a chain, the class's name).
            return new_start + min(line - 1 - start, max(new_end - new_start - 1, 0)) + 1
    return line


def _check_unchanged(path: Path, since: float) -> None:
    if path.stat().st_mtime > since:
        raise Unrecognised(f"{_shown(path)} changed after the pages ran; run again")


def _project_path(shown: str) -> Path:
    path = Path(shown)
    return path if path.is_absolute() else conf.PROJECT_ROOT / path


def _read_site(finding: NPlusOneFinding) -> tuple[Path, int]:
    """The file and line that read the relation per row (the finding's trigger, or where
    its count is read when another load came first)."""
    target = finding.target
    counted_at = target.count_site if target is not None else None
    site = (counted_at or finding.call_site or "").split(" in ")[0]
    file, _, line = site.rpartition(":")
    if not file or not line.isdigit():
        raise Unrecognised("the line that reads each row is not known")
    return _project_path(file), int(line)


def _shown(path: Path) -> str:
    try:
        return path.relative_to(conf.PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def _locate(target: FixTarget) -> tuple[Path, int | type]:
    """The file to edit, and the line of the chain or the class to edit in it."""
    if target.file is not None and target.line is not None:
        return _project_path(target.file), target.line
    owner = target.owner_class
    if owner is None:
        raise Unrecognised(f"the class {target.owner} cannot be found")
    if target.list_select_related is None:
        home = fix_home(owner)
        owner = home[0] if home is not None else owner
    filename = inspect.getsourcefile(owner)
    if filename is None or not os.path.exists(filename):
        raise Unrecognised(f"the source of {target.owner} cannot be found")
    return Path(filename), owner


def _edit(source: str, target: FixTarget, where: int | type, line: int) -> str:
    """``source`` with the fix: in the chain on ``line``, or in the class ``where`` whose
    first line (decorators included) is ``line``, both as the source is now."""
    module = cst.parse_module(source)
    if isinstance(where, int):
        edited = _edit_chain_at(module, line, target)
    else:
        edited = _edit_class(module, where, target, line)
    if not target.count_annotations:
        return edited.code
    context = CodemodContext()
    AddImportsVisitor.add_needed_import(context, "django.db.models", "Count")
    imported = AddImportsVisitor(context).transform_module(edited)
    return where_isort_puts(edited, imported).code


# --- The per-row read a count annotation replaces --------------------------------------------


def _edit_reads(source: str, line: int, names: tuple[str, ...]) -> str:
    """``row.<name>.count()`` on ``line`` read as ``row.<name>_count``: in Python source, or
    ``row.<name>.count`` in a template."""
    if not source.lstrip().startswith(("{", "<")) and _is_python(source):
        return _edit_python_reads(source, line, names)
    lines = source.splitlines(keepends=True)
    if not 0 < line <= len(lines):
        raise Unrecognised(f"line {line} is not in the template")
    text = lines[line - 1]
    missing = [name for name in names if f".{name}.count" not in text]
    if missing:
        # The fix was proven with every count read from its annotation: a count left
        # behind on another line would still run once per row.
        raise Unrecognised(f"no .{missing[0]}.count on template line {line}")
    for name in names:
        text = text.replace(f".{name}.count", f".{name}_count")
    lines[line - 1] = text
    return "".join(lines)


def _is_python(source: str) -> bool:
    try:
        cst.parse_module(source)
    except cst.ParserSyntaxError:
        return False
    return True


def _edit_python_reads(source: str, line: int, names: tuple[str, ...]) -> str:
    wrapper = MetadataWrapper(cst.parse_module(source))
    positions = wrapper.resolve(PositionProvider)
    module = wrapper.module
    changed: set[str] = set()
    for node, span in positions.items():
        if not (span.start.line <= line <= span.end.line) or not isinstance(node, cst.Call):
            continue
        func = node.func
        if node.args or not isinstance(func, cst.Attribute) or func.attr.value != "count":
            continue
        manager = func.value
        if isinstance(manager, cst.Attribute) and manager.attr.value in names:
            # An object the queryset did not load (one a POST just created) has no
            # annotation: it counts as before.
            row = module.code_for_node(manager.value)
            counted = f"{manager.attr.value}_count"
            read = cst.parse_expression(
                f'{row}.{counted} if hasattr({row}, "{counted}") else {module.code_for_node(node)}'
            )
            module = module.visit(Replace(node, read))
            changed.add(manager.attr.value)
    if not changed:
        raise Unrecognised(f"no .<relation>.count() call on line {line}")
    if len(changed) < len(set(names)):  # each count of the proven fix, or none
        left = sorted(set(names) - changed)[0]
        raise Unrecognised(f"no .{left}.count() call on line {line}")
    return module.code


# --- A queryset chain on one line ------------------------------------------------------------


def _edit_chain_at(module: cst.Module, line: int, target: FixTarget) -> cst.Module:
    wrapper = MetadataWrapper(module)
    positions = wrapper.resolve(PositionProvider)
    chains = [
        node
        for node, span in positions.items()
        if isinstance(node, cst.Call)
        and chain_link(node) is not None
        and span.start.line <= line <= span.end.line
    ]
    outermost = [c for c in chains if not any(c is not o and within(c, o) for o in chains)]
    if not outermost:
        raise Unrecognised(f"no queryset chain (Model.objects...) on line {line}")
    if len(outermost) > 1:
        raise Unrecognised(f"more than one queryset chain on line {line}; edit it by hand")
    chain = outermost[0]
    if target.names_bare_select and not has_link(chain, "select_related"):
        raise Unrecognised(
            f"the select_related() with no names is not on line {line}; name the "
            "relations in it by hand"
        )
    return wrapper.module.visit(Replace(chain, with_loads(chain, target)))


# --- A class: a view, a viewset, a ModelAdmin ------------------------------------------------


def _edit_class(module: cst.Module, owner: type, target: FixTarget, line: int) -> cst.Module:
    if target.names_bare_select:
        raise Unrecognised("name the relations in its select_related() with no names by hand")
    wrapper = MetadataWrapper(module)
    positions = wrapper.resolve(PositionProvider)
    # inspect gives the first decorator's line (@admin.register(...)), libcst the class's.
    found = [
        node
        for node, span in positions.items()
        if isinstance(node, cst.ClassDef)
        and node.name.value == owner.__name__
        and min([span.start.line, *(positions[d].start.line for d in node.decorators)])
        <= line
        <= span.end.line
    ]
    if len(found) != 1:
        raise Unrecognised(f"the class {owner.__qualname__} is not found in its source file")
    classdef = found[0]
    body: list[cst.BaseStatement] = [
        s for s in classdef.body.body if isinstance(s, cst.BaseStatement)
    ]
    if target.list_select_related is not None:
        value = _tuple(target.list_select_related)
        body = _set_attribute(body, "list_select_related", value, after="list_display")
    else:
        body = _add_to_queryset(body, owner, target)
    edited = classdef.with_changes(body=classdef.body.with_changes(body=body))
    return wrapper.module.visit(Replace(classdef, edited))


def _tuple(names: Sequence[str]) -> str:
    items = ", ".join(f'"{name}"' for name in names)
    return f"({items},)" if len(names) == 1 else f"({items})"


def _assigned(statement: cst.BaseStatement, name: str) -> cst.Assign | None:
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        small = statement.body[0]
        if isinstance(small, cst.Assign) and any(
            isinstance(t.target, cst.Name) and t.target.value == name for t in small.targets
        ):
            return small
    return None


def _set_attribute(
    body: list[cst.BaseStatement], name: str, value: str, after: str
) -> list[cst.BaseStatement]:
    expression = cst.parse_expression(value)
    for i, statement in enumerate(body):
        assign = _assigned(statement, name)
        if assign is not None:
            assert isinstance(statement, cst.SimpleStatementLine)
            body[i] = statement.with_changes(body=[assign.with_changes(value=expression)])
            return body
    new = cst.parse_statement(f"{name} = {value}\n")
    anchor = next((i for i, s in enumerate(body) if _assigned(s, after)), None)
    position = anchor + 1 if anchor is not None else _after_docstring(body)
    return [*body[:position], new, *body[position:]]


def _after_docstring(body: list[cst.BaseStatement]) -> int:
    first = body[0] if body else None
    if not isinstance(first, cst.SimpleStatementLine):
        return 0
    expression = first.body[0]
    strings = cst.SimpleString | cst.ConcatenatedString
    return 1 if isinstance(expression, cst.Expr) and isinstance(expression.value, strings) else 0


def _add_to_queryset(
    body: list[cst.BaseStatement], owner: type, target: FixTarget
) -> list[cst.BaseStatement]:
    for i, statement in enumerate(body):
        if isinstance(statement, cst.FunctionDef) and statement.name.value == "get_queryset":
            body[i] = _edit_returns(statement, target)
            return body
    for i, statement in enumerate(body):
        assign = _assigned(statement, "queryset")
        if assign is not None:
            assert isinstance(statement, cst.SimpleStatementLine)
            value = with_loads(assign.value, target)
            body[i] = statement.with_changes(body=[assign.with_changes(value=value)])
            return body
    calls = chain_code(target.select_related, target.prefetch_related, target.counted())
    if _is_admin(owner):
        method = cst.parse_statement(
            f"def get_queryset(self, request):\n    return super().get_queryset(request){calls}\n"
        )
        assert isinstance(method, cst.FunctionDef)
        # A blank line above it, as between the methods before it.
        return [*body, method.with_changes(leading_lines=[cst.EmptyLine(indent=False)])]
    model = getattr(owner, "model", None)
    if model is None:
        raise Unrecognised(f"{owner.__qualname__} has no queryset, get_queryset or model to edit")
    return _set_attribute(body, "queryset", f"{model.__name__}.objects{calls}", after="model")


def _edit_returns(function: cst.FunctionDef, target: FixTarget) -> cst.FunctionDef:
    """Each ``return <chain>`` of a ``get_queryset`` with the loads in its chain."""
    returns: list[cst.Return] = []

    class Collect(cst.CSTVisitor):
        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return node is function  # not into nested functions

        def visit_Return(self, node: cst.Return) -> None:
            returns.append(node)

    function.visit(Collect())
    if not returns or not all(isinstance(r.value, cst.Call) for r in returns):
        raise Unrecognised(
            "get_queryset does not return a call such as x.filter(...); edit it by hand"
        )
    edited = function
    for node in returns:
        assert node.value is not None
        new = node.with_changes(value=with_loads(node.value, target))
        edited = edited.visit(Replace(node, new))  # type: ignore[assignment]
    return edited


def _is_admin(owner: type) -> bool:
    return any(
        cls.__name__ == "ModelAdmin" and cls.__module__.startswith("django.contrib.admin")
        for cls in owner.__mro__
    )
