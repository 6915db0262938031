"""What the code scan reads and what it yields: the project's own Python files, and one
``Usage`` per queryset chain found in them (``queryset_chains`` does the reading).

A ``Usage`` is what one call site asks of one model: its equality, range, pattern and sort
fields, and the line. The admin's options and recorded workloads are described the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models

from django_dbtune.lookups import CASE_INSENSITIVE, Use, use_of
from django_dbtune.project import is_installed_file

NOT_PRODUCTION_DIRS = frozenset(
    {
        "migrations",
        "tests",
        "test",
        "testing",
        "test_utils",
        "factories",
        "node_modules",
        "__pycache__",
    }
)
"""Folders of the project that hold no production queries: tests and their helpers (also
the test apps a package ships, as Django's own ``django/test`` and Wagtail's
``wagtail/test``), migrations, build output."""

TEST_FILES = frozenset({"tests.py", "conftest.py", "factories.py"})
"""Files that hold tests or their data, wherever they are (``startapp`` creates
``tests.py``)."""


@dataclass
class Usage:
    """What one queryset chain asks of one model."""

    model: type[models.Model]
    file: str
    line: int
    code: str
    equality: list[tuple[str, Any]] = field(default_factory=list)
    """(field name, constant value or ``Ellipsis`` when not a constant)."""
    ranges: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    sort: list[str] = field(default_factory=list)
    single: list[str] = field(default_factory=list)
    """Fields filtered where a composite index cannot help (``exclude``, ``Q`` objects)."""
    contains: list[tuple[str, bool]] = field(default_factory=list)
    """(field, case-insensitive) searched with ``contains``/``icontains``."""
    in_loop: bool = False
    dynamic_sort: bool = False
    explicit_sort: bool = False
    admin: bool = False
    """From a ModelAdmin option: an occasional staff query, not every visitor's."""
    list_view: bool = False
    """Sliced (``[:50]``) or paginated: the query behind a list page."""

    def __post_init__(self) -> None:
        # A proxy's queries read its concrete model's table: the advice goes there.
        self.model = self.model._meta.concrete_model or self.model

    def add(self, name: str, lookup: str, constant: Any = ..., *, single: bool = False) -> None:
        """Record a filter on the field ``name`` by how an index serves ``lookup`` (see
        ``django_dbtune.lookups``); one no index on the bare column serves is left out.
        ``single``: the filter cannot share a composite index (``exclude``, ``Q`` objects)."""
        use = use_of(lookup)
        if use is None:
            return
        if use is Use.CONTAINS:
            self.contains.append((name, lookup in CASE_INSENSITIVE))
        elif single:
            self.single.append(name)
        elif use is Use.EQUALITY:
            # Only ``exact`` compares the field to the value itself (``isnull=True`` is
            # ``= None``; it does not mean the field equals True).
            if lookup == "isnull":
                constant = None if constant is True else ...
            self.equality.append((name, constant if lookup in ("exact", "isnull") else ...))
        elif use is Use.RANGE:
            self.ranges.append(name)
        else:
            self.patterns.append(name)

    def copy(self) -> Usage:
        """A copy whose lists can grow without changing the original."""
        return replace(
            self,
            equality=list(self.equality),
            ranges=list(self.ranges),
            patterns=list(self.patterns),
            sort=list(self.sort),
            single=list(self.single),
            contains=list(self.contains),
        )


def project_files(root: Path) -> Iterator[Path]:
    """The project's own production Python files: no tests, migrations, hidden folders,
    virtual environments or installed packages."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped_folder(Path(folder, d)))
        for name in sorted(files):
            if name.endswith(".py") and not (
                name.startswith("test_") or name.endswith("_test.py") or name in TEST_FILES
            ):
                yield Path(folder, name)


def _skipped_folder(path: Path) -> bool:
    return (
        path.name in NOT_PRODUCTION_DIRS
        or path.name.startswith(".")
        or is_installed_file(os.path.abspath(path))
        # A virtual environment's own folder: its packages are installed code above, and
        # nothing else in it is the project's.
        or (path / "pyvenv.cfg").exists()
    )


def resolve_path(
    model: type[models.Model], parts: list[str]
) -> tuple[type[models.Model], str] | None:
    """The model and concrete field a lookup path ends at (``author__email`` is
    ``(Author, "email")``), or None for a transform, an annotation or a many-to-many."""
    target = model
    try:
        for name in parts[:-1]:
            related = target._meta.get_field(name)
            if not related.is_relation or related.related_model is None:
                return None
            target = related.related_model
        if parts[-1] == "pk":
            return None
        final = target._meta.get_field(parts[-1])
    except FieldDoesNotExist:
        return None
    if not final.concrete or final.many_to_many:
        return None
    # A parent's field reached through multi-table inheritance, or a proxy's, lives in the
    # concrete model that declares it: an index for it belongs to that table.
    owner = final.model._meta.concrete_model if final.model is not None else None
    return owner or target, final.name
