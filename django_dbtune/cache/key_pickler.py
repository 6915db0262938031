"""How a cache key writes a query: pickled, less what Django caches on it as it compiles,
with sets in an order every process shares, and refused for a query whose answer changes
with no write (:class:`Volatile`)."""

from __future__ import annotations

import copyreg
import functools
import io
import operator
import pickle
import re
from typing import Any

from django.db.models.fields.related_lookups import RelatedIn
from django.db.models.lookups import In
from django.db.models.sql import Query
from django.utils.datastructures import OrderedSet
from django.utils.functional import cached_property as django_cached_property


class KeyPickler(pickle.Pickler):
    """Pickles a query without what Django caches on it as it compiles (``cached_property``
    values such as ``base_table`` or ``contains_aggregate``): a lookup has one key whether
    or not it has been compiled. Raises :class:`Volatile` when it meets a function whose
    value changes with no write (the clock, a random number).

    How each class is written is worked out the first time the class is met
    (:class:`_Reducers`): classes, and objects that need nothing taken out, are written by
    pickle's own C code with no Python call of ours (a primary-key get meets 13 objects, 4
    of which need one)."""

    def __init__(self, file: io.BytesIO, protocol: int) -> None:
        super().__init__(file, protocol)
        self._file = file

    def getvalue(self) -> bytes:
        return self._file.getvalue()


class Volatile(Exception):
    """The pickled value holds a function whose value changes with no write."""


class _Reducers(dict[type, Any]):
    """:class:`KeyPickler`'s dispatch table: per class, the reducer pickle calls for its
    instances. pickle looks a class up here before anything else it does for it (past the
    built-in types it writes itself), so every class gets one, made once."""

    def __missing__(self, cls: type) -> Any:
        reducer = _reducer(cls)
        self[cls] = reducer
        return reducer


KeyPickler.dispatch_table = _Reducers()

_BY_NAME = operator.attrgetter("__qualname__")
"""A class (an instance of a metaclass): written by its name, as pickle writes any class."""
_PICKLE_ITS_WAY = operator.methodcaller("__reduce_ex__", pickle.HIGHEST_PROTOCOL)
"""What pickle itself calls for an object: for classes that need nothing taken out."""


def _reducer(cls: type) -> Any:
    """How :class:`KeyPickler` writes the instances of ``cls``."""
    if issubclass(cls, type):
        return _BY_NAME
    if any("__class__" in vars(klass) for klass in cls.__mro__[:-1]):
        return _reduce_proxy  # a lazy object says another class: planned per object
    plan = _plan(cls, cls)
    volatile, sql_of, how, derived = plan
    if not volatile and sql_of is None and (how is _AS_IS or (how is _STATE and not derived)):
        return copyreg.dispatch_table.get(cls, _PICKLE_ITS_WAY)
    return functools.partial(_reduce_planned, plan)


def _reduce_proxy(obj: Any) -> Any:
    return _reduce_planned(_plan(type(obj), obj.__class__), obj)


def _reduce_planned(plan: Plan, obj: Any) -> Any:
    volatile, sql_of, how, derived = plan
    if volatile or (sql_of is not None and VOLATILE_SQL.search(sql_of(obj))):
        raise Volatile(type(obj).__qualname__)
    if how is _ORDERED_SET:  # an __in filter's values, in a set's order
        return (OrderedSet, (_in_order(obj),))
    state = getattr(obj, "__dict__", None)
    if how is _AS_IS or state is None:
        return obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    # A set pickles in an order that follows the process's hash seed: only()/defer()
    # names, the aliases a filter joined and the annotations or extra selects values()
    # picked, in a query; an __in filter's values in its lookup.
    unordered = how is _UNORDERED or (
        how is _QUERY
        and (
            len(obj.deferred_loading[0]) > 1
            or len(obj.used_aliases) > 1
            or len(obj.annotation_select_mask or ()) > 1
            or len(obj.extra_select_mask or ()) > 1
        )
    )
    if not unordered and (not derived or derived.isdisjoint(state)):
        return obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    state = obj.__getstate__()
    if not isinstance(state, dict):
        return obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    kept = {name: value for name, value in state.items() if name not in derived}
    if unordered:
        kept = {name: _ordered(value) for name, value in kept.items()}
        if isinstance(obj, In) and isinstance(kept.get("rhs"), list | tuple):
            kept["rhs"] = _in_order(kept["rhs"])  # made from the set, in its order
    # What pickle itself writes for such an object (NEWOBJ and its state), less the
    # derived values: the bytes are those of the object before it compiled.
    return (copyreg.__newobj__, (type(obj),), kept)  # type: ignore[attr-defined]


# How KeyPickler writes an instance of a class (the ``how`` of a plan).
_AS_IS = "as is"  # pickle's own way: no state of its own, a class, or its own __reduce__
_ORDERED_SET = "ordered set"
_UNORDERED = "unordered"  # an __in lookup: its values in sorted order
_QUERY = "query"  # a Query: sorted when it holds sets, less its derived attributes
_STATE = "state"  # its state less its derived attributes (when it holds any)

Plan = tuple[bool, Any, str, frozenset[str]]
"""(its instances are volatile, how to read their hand-written SQL, how it is written, its
derived attributes)."""

_plans: dict[type, Plan] = {}


def _plan(cls: type, claimed: type) -> Plan:
    """The plan for instances of ``cls`` whose ``__class__`` says ``claimed`` (the same class
    but for a proxy, whose plan is not kept)."""
    if issubclass(claimed, OrderedSet):
        how = _ORDERED_SET
    elif issubclass(claimed, type) or _pickles_itself(cls):
        how = _AS_IS
    elif cls is In or cls is RelatedIn:
        how = _UNORDERED
    elif issubclass(claimed, Query):
        how = _QUERY
    else:
        how = _STATE
    plan = (claimed in _VOLATILE, _hand_written_sql(claimed), how, _derived_attributes(claimed))
    if cls is claimed:
        _plans[cls] = plan
    return plan


def _ordered(value: Any) -> Any:
    """A set (or a tuple holding one, as ``deferred_loading`` does) in an order that is the
    same in every process: a set's own order follows the process's hash seed."""
    if isinstance(value, set | frozenset):
        return (type(value).__name__, _in_order(value))
    if isinstance(value, tuple):  # deferred_loading; a lookup's constructor arguments
        ordered = tuple(_ordered(item) for item in value)
        return ordered if any(a is not b for a, b in zip(ordered, value, strict=True)) else value
    return value


def _in_order(items: Any) -> tuple[Any, ...]:
    try:
        return tuple(sorted(items))
    except TypeError:  # values of mixed types
        return tuple(sorted(items, key=lambda item: (type(item).__qualname__, repr(item))))


_OWN_PICKLING: dict[Any, bool] = {}


def _pickles_itself(cls: Any) -> bool:
    """Whether ``cls`` says how it pickles (a field, by its model and name; a model
    instance): its own way, not its whole state (a field's holds its model's relations)."""
    own = _OWN_PICKLING.get(cls)
    if own is None:
        reduce, reduce_ex = getattr(cls, "__reduce__"), getattr(cls, "__reduce_ex__")  # noqa: B009
        own = reduce is not object.__reduce__ or reduce_ex is not object.__reduce_ex__
        _OWN_PICKLING[cls] = own
    return own


@functools.cache
def _derived_attributes(cls: Any) -> frozenset[str]:
    """The instance attributes of ``cls`` that only cache what the others determine."""
    names = {
        name
        for klass in cls.__mro__
        for name, attribute in vars(klass).items()
        if isinstance(attribute, (functools.cached_property, django_cached_property))
    }
    if issubclass(cls, Query):
        names |= {"_annotation_select_cache", "_extra_select_cache"}
    return frozenset(names)


def key_bytes(value: Any) -> bytes:
    """``value`` as a key writes it (:class:`Volatile` for a value that changes with no
    write)."""
    pickler = KeyPickler(io.BytesIO(), pickle.HIGHEST_PROTOCOL)
    pickler.dump(value)
    return pickler.getvalue()


def _volatile_functions() -> frozenset[type]:
    """Django's functions whose value changes with no write: ``Now()`` (and PostgreSQL's
    ``TransactionNow()``, ``RandomUUID()``), ``Random()``, ``UUID4()`` and ``UUID7()``."""
    from django.db.models.functions import Now, Random

    found: set[type] = {Now, Random}
    from django.db.models import functions

    # Django 6.1's UUID4() and UUID7(): random, and compiled per database (as_postgresql),
    # so no SQL text says so.
    found |= {getattr(functions, name) for name in ("UUID4", "UUID7") if hasattr(functions, name)}
    try:
        from django.contrib.postgres.functions import RandomUUID, TransactionNow
    except ImportError:  # pragma: no cover - contrib.postgres is part of Django
        pass
    else:
        found |= {RandomUUID, TransactionNow}
    return frozenset(found)


@functools.cache
def _hand_written_sql(cls: type) -> Any:
    """For a class that carries SQL written by hand (``RawSQL``, ``extra(where=...)``, a
    ``Func`` by its function name or template, a query's ``extra(select=...)``): how to
    read that text from an instance, once per class. None for every other class."""
    from django.db.models import Func
    from django.db.models.expressions import RawSQL
    from django.db.models.sql.where import ExtraWhere

    if issubclass(cls, RawSQL):
        return lambda obj: obj.sql
    if issubclass(cls, ExtraWhere):
        return lambda obj: " ".join(obj.sqls)
    if issubclass(cls, Func):
        # Func(function="RANDOM") keeps its arguments in extra, as its SQL reads them:
        # every text there may end up in the SQL (template="%(when)s", when="now()").
        return lambda obj: " ".join(
            [
                str(obj.function or ""),
                str(obj.template),
                *(value for value in obj.extra.values() if isinstance(value, str)),
            ]
        )
    if issubclass(cls, Query):
        return lambda obj: " ".join(sql for sql, _ in obj.extra.values()) if obj.extra else ""
    return None


_VOLATILE = _volatile_functions()
VOLATILE_SQL = re.compile(
    r"\b(NOW|CURRENT_TIMESTAMP|CURRENT_DATE|CURRENT_TIME|LOCALTIME|LOCALTIMESTAMP"
    r"|STATEMENT_TIMESTAMP|CLOCK_TIMESTAMP|TRANSACTION_TIMESTAMP|TIMEOFDAY|RANDOM|RAND"
    r"|GEN_RANDOM_UUID|UUIDV4|UUIDV7|UUID_GENERATE_V4|SYSDATE|CURDATE|CURTIME|UTC_TIMESTAMP"
    r"|UTC_DATE|UTC_TIME|UUID_SHORT)\b"
    # MySQL's UUID() and UNIX_TIMESTAMP() (not a uuid column, nor UNIX_TIMESTAMP(column)).
    r"|\b(UUID|UNIX_TIMESTAMP)\s*\(\s*\)",
    re.IGNORECASE,
)
"""The same, in SQL (for a query that cannot be pickled, keyed by its SQL instead)."""
