"""django-dbtune: find and fix what makes a Django site slow at the database.

The top-level import stays light: it imports no models and touches no settings.
"""

from __future__ import annotations

from django_dbtune.errors import CaptureError, DbtuneError, NPlusOneError

__version__ = "0.1.0.dev0"

__all__ = ["CaptureError", "DbtuneError", "NPlusOneError", "__version__"]
