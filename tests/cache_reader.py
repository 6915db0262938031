"""A reader in another process, for the query cache's concurrency test (started with spawn).

It sets Django up on the test database it is given and reads one book's version through the
cache until told to stop, counting reads older than the last committed version.
"""

from __future__ import annotations

import os
import time
from typing import Any


def read(
    database: str, ready: Any, go: Any, committed: Any, stale: Any, reads: Any, seconds: float
) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DBTUNE_PG_NAME"] = database
    import django

    django.setup()
    from tests.shop.models import Book

    with ready.get_lock():
        ready.value += 1
    go.wait()
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        before = committed.value
        (summary,) = (
            Book.cached_objects.filter(title="B00").cached().values_list("summary", flat=True)
        )
        with reads.get_lock():
            reads.value += 1
        if int(summary or 0) < before:
            with stale.get_lock():
                stale.value += 1
