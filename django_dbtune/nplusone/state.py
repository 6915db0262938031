"""What a detection remembers while it runs: querysets that were evaluated, and lazy loads.

Model instances are tagged (``instance._dbtune_tag``) only when they matter: they came
from a queryset of two or more rows, or from one with eager loads, or they were loaded
through such an instance. One tag object is shared by every instance at the same place of
one queryset, so tagging costs one attribute store per row and no allocation. The store is
on the instance, not on ``instance._state``: a new attribute on Django's ``ModelState``
costs about three times as much (measured on Python 3.12), and a page tags hundreds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from itertools import repeat
from typing import Any, Literal

from django.db.models import Model
from django.db.models.constants import LOOKUP_SEP

from django_dbtune.call_sites import CallSiteFinder
from django_dbtune.capture import QueryLog

# Where the detector writes on Django's objects (every one of them is listed in patches.py).
TAG = "_dbtune_tag"
"""``instance._dbtune_tag``: the instance's :class:`Tag` (``None`` on ``Model``)."""
USE = "_dbtune_use"
"""On a prefetched ``QuerySet``: the :class:`Use` its reading marks (``None`` on the class)."""
ORIGIN = "dbtune_origin"
"""On a ``Query``: (site, owner class), where the queryset was built."""
BUILDER = "dbtune_builder"
"""On a ``Query``: (installed view class, method name) when a method of an installed view
built it (Wagtail's ``IndexView.get_base_queryset``): a subclass overriding that method
is where its fix goes."""
OWNER = "dbtune_owner"
"""In a ``Query``'s ``__dict__``: the instance whose related manager built it."""
LAZY = "dbtune_lazy_load"
"""In a ``Query``'s ``__dict__`` (Django 5.2): the relation descriptor's ``__get__`` frame
that built it to load lazily."""

Site = tuple[str, int, str]
"""(file, line, function) as the interpreter names them (absolute paths; shown relative to
the project root only in findings); for a template, (its file, line, "template")."""

LoadKind = Literal[
    "forward",
    "reverse_one",
    "generic_fk",
    "deferred",
    "many",
    "count",
    "exists",
    "aggregate",
    "prefetch",
]


@dataclass(eq=False)
class Group:
    """One evaluation of a queryset whose rows are watched."""

    detection: Detection
    model: type[Model]
    size: int
    site: Site | None
    """Where the queryset was built (its manager call), when that was in the project."""
    owner: type | None
    """The project class that built it inside Django: a view, a ModelAdmin, a viewset."""
    evaluated_at: Site | None
    select_related: tuple[str, ...] = ()
    select_all: bool = False
    """``select_related()`` with no names: every non-null foreign key, in depth."""
    prefetch_related: tuple[str, ...] = ()
    deferred: tuple[frozenset[str], bool] | None = None
    """(names, defer): Django's ``Query.deferred_loading`` when ``only``/``defer`` was used."""
    library_owner: type | None = None
    """With no project line or class: the installed view that built or ran it (a CMS's own
    listing), whose subclass is where a fix can go. Its rows are not the project's for
    unused eager loads."""
    subclass_rows: bool = False
    """Its rows come from a queryset's own iterable that loads each subclass's rows by a
    query of its own (Wagtail's ``.specific()``): the queryset's joins do not reach them."""
    plain_prefetches: tuple[str, ...] = ()
    """The ``prefetch_related()`` lookups given as strings, as the queryset names them."""
    library_method: str = "get_queryset"
    """The method of ``library_owner`` that built it, which that subclass overrides."""
    used: set[str] = field(default_factory=set)
    tags: dict[tuple[str, bool], Tag] = field(default_factory=dict)

    @property
    def from_project(self) -> bool:
        return self.site is not None or self.owner is not None

    def tag(self, prefix: str = "", many: bool = False) -> Tag:
        key = (prefix, many)
        tag = self.tags.get(key)
        if tag is None:
            tag = self.tags[key] = Tag(self, prefix, many)
        return tag


class Tag:
    """Where an instance sits in a watched queryset: its group and the path that led to it."""

    __slots__ = ("eager", "group", "loaded", "many", "prefix", "read_names", "watched")

    def __init__(self, group: Group, prefix: str, many: bool) -> None:
        self.group = group
        self.prefix = prefix
        """The lookup path from the group's model to this instance, ending in ``__``."""
        self.many = many
        """The path crosses a many-valued relation (the fix is a prefetch)."""
        self.watched = group.size > 1 or many
        """Lazy loads through this instance repeat once per row (rows of a many-valued
        relation are several even under one parent)."""
        self.eager = bool(group.select_related or group.prefetch_related)
        self.read_names: set[str] = set()
        self.loaded: dict[str, Tag] = {}
        """The tag of what a lazy load of each relation brings in (asked once per row)."""

    def live(self) -> bool:
        return self.group.detection.active and not _suspended.get()

    def through(self, name: str) -> Tag:
        """The tag of instances reached from this one through relation ``name``."""
        tag = self.loaded.get(name)
        if tag is None:
            tag = self.loaded[name] = self.group.tag(self.prefix + name + LOOKUP_SEP, self.many)
        return tag

    def read(self, name: str) -> None:
        """The project read relation ``name`` of an instance with this tag."""
        if name not in self.read_names:  # once per tag
            self.read_names.add(name)
            self.group.used.add(self.prefix + name)

    def __reduce__(self) -> tuple[Any, ...]:
        # A pickled instance (a cache entry) must not drag the detection along.
        return (_dead_tag, ())


def _dead_tag() -> None:
    return None


def tag_all(rows: Iterable[Model], tag: Tag) -> None:
    """Give every row ``tag``: one attribute store per row, in C (a page has hundreds).
    ``object.__setattr__``: a model's own ``__setattr__`` (change trackers) is not run."""
    deque(map(_set, rows, repeat(TAG), repeat(tag)), maxlen=0)


def tag_one(instance: Model, tag: Tag) -> None:
    _set(instance, TAG, tag)


def tag_of(instance: Any) -> Tag | None:
    """The tag of a model instance (``None`` for anything else)."""
    return getattr(instance, TAG, None) if isinstance(instance, Model) else None


_set = object.__setattr__


class Use:
    """Reading a prefetched queryset reads relation ``name`` of rows with ``tag``; one
    object shared by every queryset of one prefetch."""

    __slots__ = ("done", "name", "tag")

    def __init__(self, tag: Tag, name: str) -> None:
        self.tag = tag
        self.name = name
        self.done = False
        """Marked already: the readers of a prefetched page's hundreds of querysets check
        this and call nothing."""

    def mark(self) -> None:
        tag = self.tag
        if self.name in tag.read_names:
            self.done = True
        elif tag.live():
            tag.read(self.name)
            self.done = True

    def __reduce__(self) -> tuple[Any, ...]:
        return (_dead_tag, ())  # a pickled queryset leaves the detection behind too


@dataclass(slots=True, eq=False)
class Load:
    """Queries run to load one relation of one instance, or for one per-row manager call."""

    kind: LoadKind
    tag: Tag
    model: type[Model]
    """The model of the instance the relation was read on."""
    name: str
    """The relation or field as a lookup segment."""
    site: Site | None
    start: int
    end: int
    """The queries, as positions in the detection's capture log."""
    sliced: bool = False
    filtered: bool = False
    reshaped: bool = False
    """The per-row call asked for ``values()``/``values_list()`` (django-taggit's ``names()``),
    which a prefetch does not serve."""
    related_model: type[Model] | None = None
    related_query_name: str | None = None
    """How the related model's queries name the way back (for ``Exists``)."""
    rows: int = 1
    """How many rows' loads this is: the lazy loads of one relation from one line that
    come one after another (a loop's N+1) are kept as one, ``start``-``end`` spanning them."""


@dataclass(slots=True, eq=False)
class Owned:
    """A log range where a related manager read rows for one project row nobody watches (a
    row fetched on its own): where that row was fetched, those rows could be prefetched."""

    start: int
    end: int
    tag: Tag
    """The project row's tag."""
    eager: str | None
    """The read's own eager loads as code (``.prefetch_related("stockrecords")``), which a
    prefetch in its place keeps; None when they cannot be written out."""


@dataclass(eq=False)
class Detection:
    """One open ``detect()``."""

    log: QueryLog
    finder: CallSiteFinder
    active: bool = True
    loads: list[Load] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    quiet: list[tuple[int, int]] = field(default_factory=list)
    """Log ranges not to read as per-row queries (prefetches, deletes, code under pause())."""
    busy: int = 0
    """Inside a load already being recorded: the queries it runs are not loads of their own."""
    reads: bool = True
    """Watch which eager loads are read (for unused ``select_related``/``prefetch_related``)."""
    watches: set[Any] = field(default_factory=set)
    """The read watches waiting for this detection's querysets."""
    chained: dict[tuple[Any, ...], bool] = field(default_factory=dict)
    """Per template line and relation: whether the template built a related manager's
    queryset past what a prefetch serves (judged once)."""
    row_calls: list[tuple[int, int, Tag]] = field(default_factory=list)
    """Log ranges of a count, ``exists()`` or aggregate the project wrote by hand for one
    watched row (``Ticket.objects.filter(kbitem=self).count()``), with that row's tag: the
    queryset its fix annotates."""
    owned: list[Owned] = field(default_factory=list)
    reports_inner: bool = False
    """Its opener reports what detections opened inside it found (see ``detect``)."""
    failed: str | None = None
    """The detector's own failure that stopped this detection (see :mod:`.failures`)."""

    def discard(self) -> None:
        """Closed, its findings made: let go of what it saw (its report keeps the queries).
        Its groups, tags and loads refer to each other and to it, so kept they would outlive
        the request until the garbage collector ran; rows still held somewhere keep a dead
        tag, which reaches nothing more."""
        self.log = QueryLog(self.log.aliases)
        for group in self.groups:
            group.tags.clear()
        self._forget()
        self.chained.clear()

    def _forget(self) -> None:
        """Empty the lists of what it saw (handed on, or let go)."""
        for collected in (self.loads, self.groups, self.quiet, self.row_calls, self.owned):
            collected.clear()

    def take_over(self, inner: Detection, offset: int) -> None:
        """A detection opened inside this one has closed: what it saw is this one's too.

        While the inner one was open, every load and queryset went to it (it was
        ``current``); without this the outer one would see only the queries, and read
        them as hand-written per-row lookups. ``offset`` is where the inner one's capture
        log starts in this one's (nested captures record each query in every open log).
        Its querysets stay watched, now for this detection.
        """
        self.loads.extend(
            replace(load, start=load.start + offset, end=load.end + offset) for load in inner.loads
        )
        self.quiet.extend((start + offset, end + offset) for start, end in inner.quiet)
        self.row_calls.extend((s + offset, e + offset, tag) for s, e, tag in inner.row_calls)
        self.owned.extend(
            replace(read, start=read.start + offset, end=read.end + offset) for read in inner.owned
        )
        for group in inner.groups:
            group.detection = self
        self.groups.extend(inner.groups)
        self.watches |= inner.watches
        inner.watches = set()
        inner._forget()  # its groups are this one's now, and keep their tags


current: ContextVar[Detection | None] = ContextVar("django_dbtune_nplusone", default=None)
_suspended: ContextVar[bool] = ContextVar("django_dbtune_nplusone_suspended", default=False)

# The hooks ask these hundreds of times per page: bound once here, since ``current.get()`` on a
# name another module imported compiles to an attribute load that builds a method object on
# every call (CPython 3.12+), which cost more than the lookup itself.
detection_now = current.get
"""The open detection of this context, or ``None``."""
suspended = _suspended.get
"""Inside :func:`pause`: the detection neither records loads nor notes reads."""


@contextmanager
def pause() -> Iterator[None]:
    """Nothing run inside is reported as an N+1 or counted as a read of an eager load."""
    token = _suspended.set(True)
    detection = current.get()
    start = len(detection.log.records) if detection is not None else 0
    try:
        yield
    finally:
        _suspended.reset(token)
        if detection is not None:
            detection.quiet.append((start, len(detection.log.records)))
