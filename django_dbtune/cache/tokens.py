"""Generation tokens: how one is made, what its time says, and how tokens are set so that
they never expire."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.core.cache import BaseCache

if TYPE_CHECKING:
    from django_dbtune.cache.snapshot import Snapshot


def new_token() -> str:
    """A fresh generation token: when it was made (milliseconds since the epoch, in hex),
    then random. Only equality decides whether an entry is valid; the time is read by
    :func:`changed_within`."""
    return f"{int(time.time() * 1000):x}.{secrets.token_hex(6)}"


def changed_within(snapshot: Snapshot, tables: Iterable[str], seconds: float) -> bool:
    """Whether the epoch or a generation of ``tables`` in ``snapshot`` was made in the last
    ``seconds`` (a token without a time, from an older version, is old)."""
    since = int((time.time() - seconds) * 1000)
    for token in (snapshot.epoch, *(snapshot.tokens.get(table, "") for table in tables)):
        made, dot, _ = token.partition(".")
        try:
            if dot and int(made, 16) >= since:
                return True
        except ValueError:
            continue
    return False


def set_forever(backend: BaseCache, values: dict[str, str]) -> None:
    """Set tokens that never expire: one ``SET``, or one ``set_many`` for several (which may
    wrap one key in a transaction). django-valkey's cluster backend takes no timeout there
    (its ``MSET`` sets none): once it refuses one, it is called without."""
    if len(values) == 1:
        backend.set(*next(iter(values.items())), timeout=None)
        return
    kind = type(backend)
    if kind not in _SET_MANY_WITHOUT_TIMEOUT:
        try:
            backend.set_many(values, timeout=None)
            return
        except TypeError as error:
            if "timeout" not in str(error):
                raise
            _SET_MANY_WITHOUT_TIMEOUT.add(kind)
    backend.set_many(values)


_SET_MANY_WITHOUT_TIMEOUT: set[type] = set()
