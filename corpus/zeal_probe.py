"""Run inside a corpus project's Django (its venv, its settings) by corpus/score.py:

    corpus/<project>/run shell -c \
        "import runpy; runpy.run_path('<abs>/zeal_probe.py', run_name='__main__')"

It does two things, and writes them as JSON to the file named by ZEAL_PROBE_OUTPUT:

1. django-zeal's N+1 detection on each page: every page is requested with Django's test client
   (logged in with force_login as the page's user), inside ``zeal.setup()``/``zeal.teardown()``
   with ``ZEAL_RAISE = False``, so zeal reports each N+1 as a ``UserWarning`` ("N+1 detected on
   app.Model.field at file:line in function") instead of raising. zeal warns again at every
   load past its threshold; the warnings are grouped by relation and line, and the count is the
   number of loads zeal recorded for that relation at that line.
2. Names the scorer compares: each relation string ("app.Model.field", as the ground truth,
   django-dbtune or zeal spell it) resolved against the project's models to one id that does
   not depend on the spelling (a reverse relation by its accessor, its related_query_name or
   ``<model>_set``; a forward field by its name or attname), and each project class a
   django-dbtune finding names ("module.Class") resolved to its file and lines.

ZEAL_PROBE_INPUT names a JSON file: {"pages": [{"url": ..., "user": ...}], "relations": [...],
"classes": [...], "zeal": true}. Nothing here changes the project's data beyond what a GET
and a login do.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import sys
import traceback
import warnings
from collections import defaultdict
from typing import Any

ROOT = os.getcwd()  # paths are shown relative to the checkout (the input's "root"), else here


def relative(path: str) -> str:
    try:
        absolute = os.path.abspath(path)
    except (TypeError, ValueError):
        return path
    if absolute.startswith(ROOT + os.sep):
        return os.path.relpath(absolute, ROOT).replace(os.sep, "/")
    return path


# --- names ----------------------------------------------------------------------------------


def _model(owner: str) -> Any:
    from django.apps import apps

    app_label, _, model_name = owner.partition(".")
    if not model_name:
        return None
    try:
        return apps.get_model(app_label, model_name)
    except (LookupError, ValueError):
        pass
    for model in apps.get_models(include_auto_created=True):  # the label differs in case
        if model._meta.label_lower == owner.lower():
            return model
    return None


def resolve_relation(text: str) -> dict[str, Any]:
    """{"id": ..., "models": [...]} for "app.Model.field"; id None when it names nothing."""
    if text.count(".") == 1:  # "app.Model": a model, no field (an unfiltered query per row)
        model = _model(text)
        if model is None:
            return {"id": None, "models": [], "why": f"no model {text!r}"}
        return {"id": None, "models": [model._meta.concrete_model._meta.label_lower]}
    owner, _, name = text.rpartition(".")
    model = _model(owner)
    if model is None:
        return {"id": None, "models": [], "why": f"no model {owner!r}"}
    models = [model._meta.concrete_model._meta.label_lower]
    if name == "get()":
        return {"id": None, "models": models}
    lowered = name.lower()
    for field in model._meta.get_fields(include_hidden=True):
        if field.auto_created and not field.concrete and getattr(field, "field", None) is not None:
            # a reverse relation (ForeignObjectRel): every name it answers to
            names = {field.name}
            with contextlib.suppress(Exception):  # a hidden relation may have none
                names.add(field.get_accessor_name() or "")
            names.add(f"{field.related_model._meta.model_name}_set")
            if lowered in {n.lower() for n in names if n}:
                forward = field.field
                target = forward.model._meta.concrete_model._meta.label_lower
                return {
                    "id": f"reverse:{forward.model._meta.label_lower}.{forward.name}",
                    "models": [*models, target],
                }
            continue
        names = {field.name, getattr(field, "attname", None) or field.name}
        if lowered in {n.lower() for n in names}:
            related = getattr(field, "related_model", None)
            if isinstance(related, type):
                models.append(related._meta.concrete_model._meta.label_lower)
            declaring = getattr(field, "model", model) or model
            return {"id": f"{declaring._meta.label_lower}.{field.name}", "models": models}
    return {"id": None, "models": models, "why": f"{model._meta.label} has no field {name!r}"}


def resolve_class(qualname: str) -> dict[str, Any] | None:
    """{"file", "start", "end"} of a project class named "module.Qual.Name"."""
    parts = qualname.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except Exception:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
            lines, start = inspect.getsourcelines(obj)
            source = inspect.getsourcefile(obj)
        except Exception:
            return None
        if source is None:
            return None
        return {"file": relative(source), "start": start, "end": start + len(lines) - 1}
    return None


# --- pages ----------------------------------------------------------------------------------


def _host() -> str:
    from django.conf import settings

    for host in settings.ALLOWED_HOSTS:
        if host != "*" and not host.startswith("*"):
            return host.lstrip(".")
    return "localhost"


def _client(user: str | None) -> Any:
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client(HTTP_HOST=_host(), raise_request_exception=False)
    if user:
        model = get_user_model()
        client.force_login(model._default_manager.get(**{model.USERNAME_FIELD: user}))
    return client


def _label(model: Any) -> str:
    return f"{model._meta.app_label}.{model.__name__}"


def zeal_pages(pages: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        import zeal
        from zeal import listeners
    except ImportError:
        return {"error": "django-zeal is not installed in this project's environment"}
    from django.conf import settings

    version = None
    try:
        from importlib.metadata import version as dist_version

        version = dist_version("django-zeal")
    except Exception:
        pass
    in_apps = any(app == "zeal" or app.startswith("zeal.") for app in settings.INSTALLED_APPS)
    if not in_apps:
        # What zeal's AppConfig.ready() does, once, before any page is requested.
        from zeal.constants import initialize_app_registry
        from zeal.patch import patch

        initialize_app_registry()
        patch()
    settings.ZEAL_RAISE = False  # report, do not raise: a page must finish to be checked
    threshold = getattr(settings, "ZEAL_NPLUSONE_THRESHOLD", 2)

    clients: dict[str | None, Any] = {}
    results = []
    for page in pages:
        url, user = page["url"], page.get("user")
        entry: dict[str, Any] = {"url": url, "user": user, "findings": []}
        results.append(entry)
        try:
            if user not in clients:
                clients[user] = _client(user)
            client = clients[user]
            token = zeal.setup()
            calls: dict[Any, int] = {}
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    response = client.get(url)
                try:
                    context = listeners._nplusone_context.get()
                    calls = {key: len(value) for key, value in context.calls.items()}
                except Exception:  # zeal's internals moved: counts from warnings
                    calls = {}
            finally:
                zeal.teardown(token)
        except Exception as error:
            entry["status"] = None
            entry["error"] = "".join(traceback.format_exception_only(error)).strip()
            continue
        entry["status"] = response.status_code
        entry["location"] = response.get("Location") if 300 <= response.status_code < 400 else None
        grouped: dict[tuple[str, str, int], dict[str, Any]] = {}
        alerts: dict[tuple[str, str, int], int] = defaultdict(int)
        for warning in caught:
            text = str(warning.message)
            if not text.startswith("N+1 detected on "):
                continue
            relation = text[len("N+1 detected on ") :].split(" ", 1)[0]
            function = text.rsplit(" in ", 1)[1] if " in " in text else None
            key = (relation, warning.filename, warning.lineno)
            alerts[key] += 1
            if os.path.abspath(warning.filename) == os.path.abspath(__file__):
                # zeal's caller is the first frame outside site-packages: with nothing of the
                # project's own on the stack (a generic view rendering a template), that is
                # this probe's client.get(). Under a server it would be the server's frame.
                caller = None
            else:
                caller = f"{relative(warning.filename)}:{warning.lineno}" + (
                    f" in {function}" if function else ""
                )
            grouped.setdefault(
                key,
                {
                    "relation": relation,
                    "model": relation.rsplit(".", 1)[0],
                    "field": relation.rsplit(".", 1)[1],
                    "file": relative(warning.filename),
                    "line": warning.lineno,
                    "function": function,
                    "caller": caller,
                    "message": text,
                },
            )
        for key, finding in grouped.items():
            relation, filename, lineno = key
            count = None
            for call_key, n in calls.items():
                if len(call_key) != 4:
                    continue
                model, field, fn, line = call_key
                if f"{_label(model)}.{field}" == relation and fn == filename and line == lineno:
                    count = n
            finding["count"] = count if count is not None else alerts[key] + threshold - 1
            entry["findings"].append(finding)
    return {"version": version, "in_installed_apps": in_apps, "pages": results}


def main() -> None:
    output = os.environ["ZEAL_PROBE_OUTPUT"]
    with open(os.environ["ZEAL_PROBE_INPUT"], encoding="utf-8") as handle:
        request = json.load(handle)
    global ROOT
    if request.get("root") and os.path.isdir(request["root"]):
        ROOT = os.path.abspath(request["root"])
    result: dict[str, Any] = {"error": None}
    try:
        import django

        result["django"] = django.get_version()
        result["python"] = sys.version.split()[0]
        wanted = request.get("zeal", True)
        result["zeal"] = zeal_pages(request.get("pages", [])) if wanted else None
        result["relations"] = {}
        relations = list(request.get("relations", []))
        for page in (result["zeal"] or {}).get("pages", []):
            relations.extend(finding["relation"] for finding in page["findings"])
        for text in dict.fromkeys(relations):
            try:
                result["relations"][text] = resolve_relation(text)
            except Exception as error:
                result["relations"][text] = {"id": None, "models": [], "why": repr(error)}
        result["classes"] = {name: resolve_class(name) for name in request.get("classes", [])}
    except Exception:
        result["error"] = traceback.format_exc()
    with open(output, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
