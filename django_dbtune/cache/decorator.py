"""``@cached(depends_on=[...])``: a function's result, per arguments, until a table it reads
changes."""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Model

from django_dbtune.cache.invalidation import model_named, model_tables
from django_dbtune.cache.keys import function_digest
from django_dbtune.cache.readthrough import check_timeout, read_through
from django_dbtune.conf import conf
from django_dbtune.errors import DbtuneError

_Func = TypeVar("_Func", bound=Callable[..., Any])


def cached(
    timeout: int | None = None,
    depends_on: Iterable[type[Model] | str] = (),
    using: str = DEFAULT_DB_ALIAS,
    lock: bool | None = None,
) -> Callable[[_Func], _Func]:
    """Cache a function's result per arguments until a table of ``depends_on`` changes.

    ``depends_on`` lists models (or ``"app_label.Model"``) whose tables the function reads;
    ``using`` the database they are read from; ``lock`` as for ``.cached()``. Arguments
    must be picklable; a call whose arguments are not runs uncached.
    """
    check_timeout("@cached", timeout)
    if not depends_on:
        raise DbtuneError("@cached(depends_on=[...]) needs the models the function reads.")
    names = list(depends_on)

    def decorate(function: _Func) -> _Func:
        label = f"{function.__module__}.{function.__qualname__}"

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not conf.cache_active:
                return function(*args, **kwargs)
            try:
                arguments = pickle.dumps((args, sorted(kwargs.items())))
            except Exception:
                return function(*args, **kwargs)
            models = [model_named(name, "@cached(depends_on=...)") for name in names]
            tables = frozenset(table for model in models for table in model_tables(model))
            return read_through(
                using,
                function_digest(using, label, arguments, models),
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
