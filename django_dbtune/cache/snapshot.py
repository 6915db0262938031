"""What a cached read sees of the backend at one moment: the epoch and the tables' generation
tokens (a :class:`Snapshot`), and whether a stored entry is valid under them."""

from __future__ import annotations

from typing import Any


class Snapshot:
    """The epoch and some tables' generation tokens, as read at one moment."""

    __slots__ = ("catalog", "entry", "epoch", "fetched", "tokens")

    def __init__(self, epoch: str, tokens: dict[str, str], catalog: str = "") -> None:
        self.epoch = epoch
        self.tokens = tokens
        self.entry: Any = None
        self.fetched: bool | None = None
        """Under CACHE_LOCAL: read from the backend (True) or served from memory (False)."""
        self.catalog = catalog
        """The token of the last change of views, triggers or functions any process
        published ("" while none was)."""

    def validate(self, stored: Any) -> bool | None:
        """Whether a stored entry, ``(epoch, tables, tokens, value, seconds, expires)``, is
        still valid under this snapshot; None when the snapshot lacks some of its tables."""
        if not (isinstance(stored, tuple) and len(stored) == 6 and stored[0] == self.epoch):
            return False
        current = self.tokens
        for table, token in zip(stored[1], stored[2], strict=True):
            now = current.get(table)
            if now is None:
                return None
            if now != token:
                return False
        return True


Stored = tuple[tuple[str, ...], Any, float]
"""An entry as read back: the tables it read, its value, the seconds its computation took."""


def as_stored(stored: tuple[Any, ...]) -> Stored:
    """What a reader needs of a valid entry: its tables, value and seconds."""
    return stored[1], stored[3], stored[4]
