"""The exceptions django-dbtune raises to its users."""

from __future__ import annotations


class DbtuneError(Exception):
    """Base class of every error django-dbtune raises on purpose."""


class CaptureError(DbtuneError):
    """Query capture was used in a way that could not record anything."""


class WriteError(DbtuneError):
    """A fix cannot be written to the project's files; nothing was changed."""


class NPlusOneError(DbtuneError):
    """An N+1 query or an unused eager load was found where they are not allowed."""
