"""What an N+1 detector costs per request, as a ratio to the same request with no tool.

Two pages of 200 rows through Django's whole WSGI handler and middleware stack (DEBUG off,
one SQLite file, a persistent connection): one with its relations prefetched (4 queries),
one that loads a foreign key lazily per row (a real N+1: 201 queries). Tools, each as the
outermost middleware around the same stack:

- none: the stack alone;
- django-dbtune: ``NPlusOneMiddleware``;
- bare wrapper: ``bench/bare_recorder.py``, a ``connection.execute_wrapper`` that records
  SQL, time and call site, the floor for any detector that looks at queries;
- django-zeal: ``zeal_middleware`` (installed by ``bench/env.sh``; skipped when missing).

All tools run in one process, in blocks of a few requests that alternate (the order turns
every round), timed in CPU time (``time.process_time``), so another process on the machine
slows no tool more than another. Patches that a tool leaves in Django between requests are
taken out before every other tool's block: django-zeal's (installed for good by its app) are
switched in and out as a set, django-dbtune's are released as a change of settings would.
Each round gives one ratio per tool and page (tool block / no-tool block); a worker process
prints the median over its rounds, and the figure is the median over the processes, with
their range (the spread from process to process).

    DBTUNE_PYTHON=python3.12 bench/env.sh 6.1   # a venv with django-zeal (never a dependency)
    .venv-bench-django6.1/bin/python bench/nplusone_overhead.py [--processes 3] [--rounds 60]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGES = {"prefetched": ("/prefetched/", 4), "n-plus-one": ("/n-plus-one/", 201)}
TOOLS = ("none", "dbtune", "bare", "zeal")
NAMES = {"dbtune": "django-dbtune", "bare": "bare wrapper", "zeal": "django-zeal"}


# --- Worker ----------------------------------------------------------------------------------


class ZealSwitch:
    """django-zeal's patches, switched in and out as a set: its ``patch()`` replaces
    attributes of Django's model classes and modules for good, so the worker records what
    it changed and puts either side back."""

    def __init__(self) -> None:
        import django.contrib.contenttypes.fields  # zeal patches it
        import django.db.models.fields.related_descriptors  # noqa: F401
        from zeal.constants import initialize_app_registry
        from zeal.patch import patch

        before = self._snapshot()
        initialize_app_registry()
        patch()
        after = self._snapshot()
        missing = object()
        self.changes = [
            (owner, name, before[owner].get(name, missing), value, missing)
            for owner, names in after.items()
            for name, value in names.items()
            if before[owner].get(name, missing) is not value
        ]
        self.on = True
        self.switch(False)

    @staticmethod
    def _snapshot() -> dict[Any, dict[str, Any]]:
        owners: list[Any] = []
        for name, module in list(sys.modules.items()):
            if module is None or not name.startswith(("django.db.models", "django.contrib.")):
                continue
            owners.append(module)
            owners.extend(v for v in vars(module).values() if isinstance(v, type))
        return {owner: dict(vars(owner)) for owner in owners}

    def switch(self, on: bool) -> None:
        if on == self.on:
            return
        for owner, name, old, new, missing in self.changes:
            value = new if on else old
            if value is missing:
                delattr(owner, name)
            else:
                setattr(owner, name, value)
        # Related managers' classes are built once per descriptor by a factory zeal patches.
        from django.apps import apps

        for model in apps.get_models():
            for value in vars(model).values():
                cached = getattr(value, "__dict__", None)
                if isinstance(cached, dict):
                    cached.pop("related_manager_cls", None)
        self.on = on


def environ(url: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": url,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def request(handler: Any, url: str) -> int:
    status: list[str] = []
    response = handler(environ(url), lambda s, headers, exc_info=None: status.append(s))
    b"".join(response)
    response.close()
    return int(status[0].split()[0])


def worker(rounds: int, requests: int) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "example_project"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.nplusone_settings"
    import copy
    import logging
    import warnings

    import django

    django.setup()
    from bare_recorder import BareRecorder
    from django.core.handlers.exception import convert_exception_to_response
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.db import connection

    from dashboard import seed
    from django_dbtune.middleware import NPlusOneMiddleware
    from django_dbtune.nplusone import patches

    call_command("migrate", verbosity=0)
    seed.seed(0.1)
    # django-zeal patches only now, after django-dbtune took Django's own functions.
    zeal = ZealSwitch() if importlib.util.find_spec("zeal") else None
    base = WSGIHandler()
    middleware: dict[str, Callable[[Any], Any]] = {"dbtune": NPlusOneMiddleware}
    middleware["bare"] = bare = _Keep(BareRecorder)
    if zeal is not None:
        from zeal.middleware import zeal_middleware

        middleware["zeal"] = zeal_middleware
    handlers = {"none": base}
    for tool, factory in middleware.items():
        handlers[tool] = copy.copy(base)
        handlers[tool]._middleware_chain = convert_exception_to_response(
            factory(base._middleware_chain)
        )
    release = getattr(patches, "release_kept", None)  # the middleware's, kept between requests

    def use(tool: str) -> None:
        if zeal is not None:
            zeal.switch(tool == "zeal")
        if tool != "dbtune" and release is not None:
            release()
        assert tool == "dbtune" or not patches.installed(), tool

    _check(handlers, use, bare)
    logging.disable(logging.CRITICAL)  # every tool reports through logging or warnings
    warnings.simplefilter("ignore")
    tools = list(handlers)
    times: dict[str, dict[str, list[float]]] = {p: {t: [] for t in tools} for p in PAGES}
    for number in range(rounds):
        turn = number % len(tools)
        order = tools[turn:] + tools[:turn]
        if number % 2:
            order.reverse()
        for page, (url, _) in PAGES.items():
            for tool in order:
                use(tool)
                handler = handlers[tool]
                request(handler, url)  # the first request after a switch is not timed
                gc.collect()
                start = time.process_time()
                for _ in range(requests):
                    request(handler, url)
                times[page][tool].append((time.process_time() - start) / requests)
    connection.close()
    result = {
        page: {
            "none_ms": statistics.median(by_tool["none"]) * 1000,
            **{
                tool: statistics.median(
                    spent / plain
                    for spent, plain in zip(by_tool[tool], by_tool["none"], strict=True)
                )
                for tool in tools
                if tool != "none"
            },
        }
        for page, by_tool in times.items()
    }
    print(json.dumps(result))


class _Keep:
    """Builds the bare recorder and keeps it, to read what it recorded."""

    def __init__(self, factory: Callable[[Any], Any]) -> None:
        self.factory = factory
        self.made: Any = None

    def __call__(self, get_response: Any) -> Any:
        self.made = self.factory(get_response)
        return self.made


def _check(handlers: dict[str, Any], use: Callable[[str], None], bare: _Keep) -> None:
    """Every page answers 200 with its number of queries, and every tool sees the N+1 page's
    N+1 and nothing on the prefetched page."""
    import logging
    import warnings

    from django.db import connection

    for page, (url, queries) in PAGES.items():
        use("none")
        ran: list[str] = []

        def count(execute: Any, sql: str, *args: Any, ran: list[str] = ran) -> Any:
            ran.append(sql)
            return execute(sql, *args)

        with connection.execute_wrapper(count):
            assert request(handlers["none"], url) == 200, page
        assert len(ran) == queries, (page, len(ran))
        for tool in handlers:
            use(tool)
            records: list[Any] = []
            handler = logging.Handler()
            handler.emit = records.append  # type: ignore[method-assign]
            logger = logging.getLogger("django_dbtune.nplusone")
            logger.addHandler(handler)
            try:
                with warnings.catch_warnings(record=True) as warned:
                    warnings.simplefilter("always")
                    assert request(handlers[tool], url) == 200, (tool, page)
            finally:
                logger.removeHandler(handler)
            found = {
                "none": 0,
                "dbtune": len(records),
                "bare": 0,
                "zeal": sum("N+1" in str(w.message) for w in warned),
            }[tool]
            assert bool(found) == (page == "n-plus-one" and tool in ("dbtune", "zeal")), (
                tool,
                page,
                found,
            )
        assert len(bare.made.last) == queries, page


# --- Runner ----------------------------------------------------------------------------------


def run(rounds: int, requests: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="dbtune-bench-") as folder:
        env = {
            **os.environ,
            "BENCH_DB": os.path.join(folder, "bench.sqlite3"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
        }
        command = [
            sys.executable,
            __file__,
            "--worker",
            "--rounds",
            str(rounds),
            "--requests",
            str(requests),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(done.stderr)
    result: dict[str, dict[str, float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--requests", type=int, default=4, help="requests per block")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.rounds, args.requests)
        return
    import django

    started = time.monotonic()
    load = os.getloadavg()[0]
    results = []
    for number in range(args.processes):
        results.append(run(args.rounds, args.requests))
        print(f"process {number + 1}: {json.dumps(results[-1])}", file=sys.stderr)
    tools = [tool for tool in NAMES if tool in results[0]["prefetched"]]
    print(
        f"Django {django.get_version()}, Python {sys.version.split()[0]}, SQLite file, "
        f"DEBUG off; {args.processes} processes x {args.rounds} rounds x {args.requests} "
        f"requests per block; CPU time; load average {load:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end ({time.monotonic() - started:.0f} s)"
    )
    print("request CPU time / no tool: median over the processes [range across processes]")
    header = "".join(f"{f'{page} ({q} queries)':>34}" for page, (_, q) in PAGES.items())
    print(f"{'tool':<16}{header}")
    for tool in tools:
        cells = []
        for page in PAGES:
            values = sorted(result[page][tool] for result in results)
            span = f"[{values[0]:.3f}-{values[-1]:.3f}]"
            cells.append(f"{statistics.median(values):.3f}x {span}")
        print(f"{NAMES[tool]:<16}" + "".join(f"{cell:>34}" for cell in cells))
    plain = [
        f"{page} {statistics.median(r[page]['none_ms'] for r in results):.2f} ms" for page in PAGES
    ]
    print("no tool, per request: " + ", ".join(plain))
    if "zeal" not in tools:
        print("django-zeal: not installed (bench/env.sh installs it)")


if __name__ == "__main__":
    main()
