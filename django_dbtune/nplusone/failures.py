"""When the detector's own code fails inside a request: the page goes on as Django would run
it, the detection stops watching, and its report says it has nothing to say.

Each hook keeps its own work in a ``try`` (free while nothing raises) and asks
:func:`give_up` about an exception: one raised in django-dbtune's own code (not a
``DbtuneError`` it raises on purpose) is the detector's failure; any other (the database's,
the project's) is the page's and goes on as it would without the detector.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django_dbtune.errors import DbtuneError
from django_dbtune.nplusone.state import Detection

logger = logging.getLogger("django_dbtune.nplusone")

_PACKAGE = str(Path(__file__).resolve().parent.parent)
_logged: set[tuple[str, int]] = set()
"""Where the failures already logged were raised, so that each is logged once."""


def give_up(detection: Detection | None, error: Exception) -> bool:
    """Whether ``error`` is the detector's own failure; then ``detection`` stops watching
    (every hook passes its calls straight to Django from now on) and the failure is logged
    once, and the caller finishes the call as Django would. False: re-raise it."""
    traceback = error.__traceback__
    if isinstance(error, DbtuneError) or traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    code = traceback.tb_frame.f_code
    if not code.co_filename.startswith(_PACKAGE):
        return False
    if detection is not None and detection.failed is None:
        detection.failed = f"{type(error).__name__}: {error}"
        detection.busy += 1  # never taken back: the hooks pass everything through
        detection.active = False  # and its rows' tags are dead
    log_once(error, "stopped watching this request, which goes on as it would without it")
    return True


def first_from_its_place(error: Exception) -> bool:
    """Whether no error was seen before from the line that raised this one (a failure of
    django-dbtune's own is logged once per place, not once per request)."""
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    where = (
        (traceback.tb_frame.f_code.co_filename, traceback.tb_lineno)
        if traceback is not None
        else (type(error).__name__, 0)
    )
    if where in _logged:
        return False
    _logged.add(where)
    return True


def log_once(error: Exception, outcome: str) -> None:
    """Log the detector's own failure, once per place it was raised: what became of the
    request (``outcome``), and how to turn the detector off."""
    if not first_from_its_place(error):
        return
    logger.error(
        "The N+1 detector failed (%s: %s) and %s; its report has no findings. Set "
        "DBTUNE['ENABLED'] = False to turn the detector off until it is fixed. (Logged once.)",
        type(error).__name__,
        error,
        outcome,
        exc_info=error,
    )
