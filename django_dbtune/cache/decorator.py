"""``@cached(depends_on=[...])``: a function's result, per arguments, until a table it reads
changes."""

from __future__ import annotations

import functools
import inspect
import pickle
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db.models import Model

from django_dbtune.cache.invalidation import database_group, model_named, model_tables
from django_dbtune.cache.keys import function_digest
from django_dbtune.cache.readthrough import check_timeout, read_through
from django_dbtune.cache.tables import in_group
from django_dbtune.conf import conf
from django_dbtune.errors import DbtuneError

_Func = TypeVar("_Func", bound=Callable[..., Any])


def cached(
    timeout: int | None = None,
    depends_on: Iterable[type[Model] | str] = (),
    using: str | None = None,
    lock: bool | None = None,
) -> Callable[[_Func], _Func]:
    """Cache a function's result per arguments until a table of ``depends_on`` changes.

    ``depends_on`` lists models (or ``"app_label.Model"``) whose tables the function reads;
    ``using`` the database they are read from (by default, where the database routers send
    each model's reads); ``lock`` as for ``.cached()``. Arguments must be picklable; a call
    whose arguments are not runs uncached. An ``async def`` is refused: its result is a
    coroutine, which no cache can keep.
    """
    check_timeout("@cached", timeout)
    if not depends_on:
        raise DbtuneError("@cached(depends_on=[...]) needs the models the function reads.")
    names = list(depends_on)

    def decorate(function: _Func) -> _Func:
        label = f"{function.__module__}.{function.__qualname__}"
        if inspect.iscoroutinefunction(function):
            raise DbtuneError(
                f"@cached cannot keep what {label}() returns: it is an async function (a "
                "coroutine is not a value). Cache the querysets it awaits with .cached(), or "
                "decorate a sync function and call it through sync_to_async."
            )

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not conf.cache_active:
                return function(*args, **kwargs)
            try:
                arguments = pickle.dumps((args, sorted(kwargs.items())))
            except Exception:
                return function(*args, **kwargs)
            models = [model_named(name, "@cached(depends_on=...)") for name in names]
            alias, others, tables = _read_where(models, using)
            if any(connections[other].in_atomic_block for other in others):
                # What it reads there may never be committed (read_through checks ``alias``).
                return function(*args, **kwargs)
            return read_through(
                alias,
                function_digest(alias, label, arguments, models, others),
                tables,
                lambda: tables,
                lambda: (function(*args, **kwargs), tables),
                timeout,
                lock,
                label=f"@cached {label}",
                subject=f"@cached {label}",
            )

        return cast(_Func, wrapper)

    return decorate


def _read_where(
    models: list[type[Model]], using: str | None
) -> tuple[str, tuple[str, ...], frozenset[str]]:
    """The database the function reads (``using``, or where the routers send the first
    model's reads), the other databases its models are read from (a database per tenant:
    each is in the key), and its models' tables, each named in the group of the database
    its model is read from (another group's with it, as an entry that read there records
    it)."""
    aliases = [using or router.db_for_read(model) or DEFAULT_DB_ALIAS for model in models]
    own = database_group(aliases[0])
    tables: set[str] = set()
    for model, alias in zip(models, aliases, strict=True):
        group = database_group(alias)
        named = model_tables(model)
        tables.update(named if group == own else (in_group(group, t) for t in named))
    others = tuple(sorted({alias for alias in aliases if alias != aliases[0]}))
    return aliases[0], others, frozenset(tables)
