"""Whether a file is the project's own code: the two questions every feature asks, each
answered once.

- :func:`is_installed_file`: installed code (the standard library, anything in a
  ``site-packages``/``dist-packages`` folder, a virtual environment inside the project root
  included, or a frozen module) is never the line to change. Call sites (capture, the N+1
  detector) and the code scan ask only this: a query may come from a script or test outside
  the project root, and that is still the user's line.
- :func:`is_project_file`: under ``DBTUNE["PROJECT_ROOT"]`` and not installed. What
  django-dbtune may point a fix at or edit asks this: the app labels ``suggest_indexes``
  reads by default, the models ``--write`` may edit, and the view the N+1 detector puts a
  fix on.
"""

from __future__ import annotations

import os
import sysconfig
from functools import lru_cache

from django_dbtune.conf import conf

_INSTALL_FOLDERS = ("site-packages", "dist-packages")

_STDLIB = tuple(
    {os.path.abspath(sysconfig.get_paths()[key]) + os.sep for key in ("stdlib", "platstdlib")}
)
_SITE_PACKAGES = tuple(
    {os.path.abspath(sysconfig.get_paths()[key]) + os.sep for key in ("purelib", "platlib")}
)


@lru_cache(maxsize=4096)
def is_installed_file(path: str) -> bool:
    """Whether ``path`` (absolute) is installed code rather than anybody's project: the
    standard library, an installed package, or a frozen module (``<frozen ...>``)."""
    if path.startswith("<frozen"):
        return True
    if path.startswith(_STDLIB) or path.startswith(_SITE_PACKAGES):
        return True
    parts = path.split(os.sep)
    return any(folder in parts for folder in _INSTALL_FOLDERS)


def is_project_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the project's own code: under ``DBTUNE["PROJECT_ROOT"]`` and not
    installed code."""
    absolute = os.path.abspath(os.fspath(path))
    root = str(conf.PROJECT_ROOT)
    inside = absolute == root or absolute.startswith(root.rstrip(os.sep) + os.sep)
    return inside and not is_installed_file(absolute)
