"""Requesting the project's own pages in-process, for the commands that look at them."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME, get_user_model
from django.core.management.base import CommandError, CommandParser
from django.db import DatabaseError
from django.http import HttpResponseBase
from django.shortcuts import resolve_url
from django.test import Client

from django_dbtune.findings import NPlusOneFinding


@dataclass(frozen=True)
class Page:
    """How one requested page answered."""

    url: str
    status: int
    location: str | None = None
    """Where a 3xx answer redirects to."""
    findings: list[NPlusOneFinding] = field(default_factory=list)
    queries: int | None = None
    """How many queries the request ran, when they were counted."""
    query_ms: float | None = None
    """How long those queries took, in milliseconds."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def answer(self) -> str:
        """The status as people read it: ``200``, ``302 to /accounts/login/?next=/books/``."""
        return f"{self.status} to {self.location}" if self.location else str(self.status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "location": self.location,
            "queries": self.queries,
            "query_ms": None if self.query_ms is None else round(self.query_ms, 3),
        }


def client(user: str | None = None) -> Client:
    """A test client that sends a host name the site accepts (no DisallowedHost), logged in
    as ``user`` (a value of the user model's ``USERNAME_FIELD``) when one is given."""
    browser = Client(HTTP_HOST=_request_host(), raise_request_exception=False)
    if user is not None:
        browser.force_login(find_user(user))
    return browser


def find_user(username: str) -> Any:
    """The user whose ``USERNAME_FIELD`` is ``username``, or a CommandError naming both."""
    model = get_user_model()
    name_field = model.USERNAME_FIELD
    try:
        return model._default_manager.get(**{name_field: username})
    except model.DoesNotExist:
        raise CommandError(
            f"--user: there is no user whose {name_field} is {username!r} "
            f"({model._meta.label}.USERNAME_FIELD is {name_field!r})."
        ) from None
    except DatabaseError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else error
        raise CommandError(f"--user: cannot read the users: {first_line}") from None


def add_page_arguments(parser: CommandParser) -> None:
    """The URLs to request and the output format, as every page command takes them."""
    parser.add_argument("urls", nargs="+", metavar="URL", help="Paths such as /books/.")
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="Output format."
    )
    add_visit_arguments(parser)


def add_visit_arguments(parser: CommandParser) -> None:
    """Who requests the pages, and which answers other than 2xx are accepted."""
    parser.add_argument(
        "--user",
        metavar="USERNAME",
        help="Request the pages logged in as this user (the value of the user model's "
        "USERNAME_FIELD), as a login-protected page needs.",
    )
    parser.add_argument(
        "--allow-status",
        nargs="+",
        type=_status,
        default=[],
        metavar="STATUS",
        help="HTTP statuses other than 2xx to accept, such as 302 404. Any other page that "
        "does not answer 2xx fails the command, as it was not really checked.",
    )


def _status(value: str) -> int:
    try:
        status = int(value)
    except ValueError:
        status = 0
    if not 100 <= status <= 599:
        raise argparse.ArgumentTypeError(f"{value!r} is not an HTTP status (100 to 599)")
    return status


def check_paths(urls: list[str]) -> None:
    for url in urls:
        if not url.startswith("/"):
            raise CommandError(f"{url!r} is not a path: give it as /path/ on this site.")


def _request_host() -> str:
    for host in settings.ALLOWED_HOSTS:
        if host != "*" and not host.startswith("*"):
            return host.lstrip(".")
    return "localhost"


def answered(url: str, response: HttpResponseBase, **extra: Any) -> Page:
    location = response.get("Location") if 300 <= response.status_code < 400 else None
    return Page(url, response.status_code, location, **extra)


def refused(pages: Sequence[Page], allowed: Sequence[int], user: str | None) -> str | None:
    """Why the run is no all-clear: each page that answered neither 2xx nor an allowed
    status, with a hint; None when every page did."""
    lines = [
        f"  {page.url}: {explain(page, user)}"
        for page in pages
        if not page.ok and page.status not in allowed
    ]
    if not lines:
        return None
    return "\n".join(
        [
            "These pages did not answer 2xx (--allow-status STATUS accepts a status):",
            *lines,
        ]
    )


def explain(page: Page, user: str | None) -> str:
    """The page's answer, and what to do when it sent the request to the login page or
    refused it outright (401 or 403, as an API with session or token authentication does)."""
    if page.location is None:
        to_login = page.status in (401, 403)
    else:
        # LOGIN_URL, or any page given the ?next= back (the admin's own login page does).
        path, _, query = page.location.partition("?")
        to_login = path == str(resolve_url(settings.LOGIN_URL)).split("?")[0]
        to_login = to_login or REDIRECT_FIELD_NAME in parse_qs(query)
    if not to_login:
        return page.answer
    if user is None:
        return f"{page.answer}: log in with --user"
    return f"{page.answer}: the user {user!r} may not see it"


def nplusone_pages(
    urls: list[str], threshold: int | None = None, user: str | None = None, prove: bool = True
) -> list[Page]:
    """Each page requested in-process, with its N+1 findings, each fix proven by requesting
    the page again with it applied (``prove``)."""
    from django_dbtune.nplusone import detect
    from django_dbtune.nplusone.proof import not_rerun

    browser = client(user)
    pages = []
    for url in urls:
        with detect(threshold=threshold, url=url, reports_inner=True) as report:
            response = browser.get(url)
        found = report.findings
        page = answered(url, response)
        if prove and found and page.ok:
            aliases = {record.alias for record in report.queries.records}
            found = _proven(found, browser, url, aliases)
        elif prove and found:
            found = [not_rerun(f, "the page did not answer 2xx: not re-run") for f in found]
        queries, query_ms = len(report.queries.records), report.queries.duration * 1000
        pages.append(answered(url, response, findings=found, queries=queries, query_ms=query_ms))
    return pages


def _proven(
    found: list[NPlusOneFinding], browser: Client, url: str, aliases: set[str]
) -> list[NPlusOneFinding]:
    from django_dbtune.nplusone.proof import answer_of, rerun

    def call() -> tuple[int, str | None]:
        response = browser.get(url)
        exc_info = getattr(response, "exc_info", None)
        if exc_info:
            raise exc_info[1]
        return answer_of(response)

    return rerun(found, call, aliases)


def again(urls: list[str], user: str | None) -> tuple[dict[str, Page], str]:
    """Each page as it answers now, requested in a new process (which imports the source as
    it is now on disk), and why none could be requested ("" when they were)."""
    command = [sys.executable, "-m", "django", "dbtune_nplusone", *urls, "--format", "json"]
    command.append("--no-proof")  # a page other than 2xx still prints its count
    if user is not None:
        command += ["--user", user]
    path = os.pathsep.join(p for p in (sys.path[0], os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    env.setdefault("DJANGO_SETTINGS_MODULE", str(settings.SETTINGS_MODULE))
    run = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    try:
        answered = {
            page["url"]: Page(page["url"], page["status"], queries=page["queries"])
            for page in json.loads(run.stdout)
        }
    except (ValueError, KeyError, TypeError):
        # It did not run (an edit that breaks an import): what it printed last says why.
        return {}, (run.stderr.strip().splitlines() or ["nothing printed"])[-1]
    return answered, ""


def after_writing(
    pages: list[Page], after: dict[str, Page], failure: str = ""
) -> tuple[list[str], str]:
    """The lines that compare each page before and after the fixes were written, and what
    went wrong ("" when nothing did): a page whose status changed was broken by an edit,
    and one not requested again (``failure``: why none was) was not checked."""
    lines, broken = [], []
    for page in pages:
        now = after.get(page.url)
        if now is None:
            told = f": {failure}" if failure else ""
            lines.append(f"  GET {page.url}  {page.queries} -> ? queries (not requested{told})")
            broken.append(f"{page.url} (not requested again)")
            continue
        line = f"  GET {page.url}  {page.queries} -> {now.queries} queries"
        if now.status != page.status:
            line += f", status {now.status} (was {page.status})"
            broken.append(f"{page.url} ({page.status} -> {now.status})")
        lines.append(line)
    if not broken:
        return lines, ""
    return lines, (
        "A page answers differently with the fixes written: "
        + ", ".join(broken)
        + ". Check the edits above (git diff) and undo the one that breaks it."
    )
