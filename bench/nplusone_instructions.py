"""What an N+1 detector costs per request, in instructions: a count that moves far less than
``nplusone_overhead.py``'s CPU time, which moves by a percent or two between processes (the
same code in another invocation can differ by a few tenths of a percent).

The same two pages and tools as ``nplusone_overhead.py`` (no tool, django-dbtune's
``NPlusOneMiddleware``, the bare execute wrapper), each in a process of its own under
valgrind's cachegrind, which counts the instructions the process runs. A process requests
its page a few times to warm up, then ``--requests`` more; another one stops after the
warm-up; the difference over ``--requests`` is one request's instructions (Python's
start, Django's setup and the warm-up cancel out). Printed as a ratio to no tool.

Instructions are not time: memory stalls, cache misses and the garbage collector's timing
are not in the count, so a tool's ratio here is a floor for its CPU-time ratio, and a
change that removes instructions shows here even when the CPU-time figure cannot resolve
it. django-zeal is left out: it patches Django for good when its app loads, so no process
of the same settings runs without it.

    DBTUNE_PYTHON=python3.12 bench/env.sh 6.1      # the benchmark environment
    apt-get install valgrind                       # cachegrind
    .venv-bench-django6.1/bin/python bench/nplusone_instructions.py [--requests 10]
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGES = {"prefetched": "/prefetched/", "n-plus-one": "/n-plus-one/"}
TOOLS = {"none": "no tool", "dbtune": "django-dbtune", "bare": "bare wrapper"}
WARM_UP = 3


def worker(tool: str, url: str, requests: int, seed: bool) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT / "example_project"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.nplusone_settings"
    import logging

    import django

    django.setup()
    if seed:
        from django.core.management import call_command

        from dashboard import seed as seeding

        call_command("migrate", verbosity=0)
        seeding.seed(0.1)
        return
    from bare_recorder import BareRecorder
    from django.core.handlers.exception import convert_exception_to_response
    from django.core.handlers.wsgi import WSGIHandler
    from nplusone_overhead import request

    from django_dbtune.middleware import NPlusOneMiddleware

    handler: Any = WSGIHandler()
    if tool != "none":
        factory = {"dbtune": NPlusOneMiddleware, "bare": BareRecorder}[tool]
        wrapped = copy.copy(handler)
        wrapped._middleware_chain = convert_exception_to_response(
            factory(handler._middleware_chain)
        )
        handler = wrapped
    logging.disable(logging.CRITICAL)
    for _ in range(WARM_UP + requests):
        assert request(handler, url) == 200


def instructions(env: dict[str, str], tool: str, url: str, requests: int) -> int:
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--worker",
        tool,
        url,
        str(requests),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode or found is None:
        sys.exit(f"{tool} {url}: {done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--worker", nargs=3, metavar=("TOOL", "URL", "REQUESTS"))
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed:
        worker("none", "", 0, seed=True)
        return
    if args.worker:
        tool, url, requests = args.worker
        worker(tool, url, int(requests), seed=False)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind).")
    import django

    with tempfile.TemporaryDirectory(prefix="dbtune-bench-") as folder:
        env = {
            **os.environ,
            "BENCH_DB": os.path.join(folder, "bench.sqlite3"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
        }
        subprocess.run([sys.executable, __file__, "--seed"], env=env, check=True)
        counts = {
            (page, tool): (
                instructions(env, tool, url, args.requests) - instructions(env, tool, url, 0)
            )
            / args.requests
            for page, url in PAGES.items()
            for tool in TOOLS
        }
    print(
        f"Django {django.get_version()}, Python {sys.version.split()[0]}, SQLite file, "
        f"DEBUG off; instructions per request over {args.requests} requests (cachegrind)"
    )
    print(f"{'tool':<16}" + "".join(f"{page:>28}" for page in PAGES))
    for tool, name in TOOLS.items():
        cells = []
        for page in PAGES:
            count = counts[page, tool]
            ratio = count / counts[page, "none"]
            cells.append(f"{count / 1e6:.2f} M  {ratio:.4f}x")
        print(f"{name:<16}" + "".join(f"{cell:>28}" for cell in cells))


if __name__ == "__main__":
    main()
