"""Requesting the project's own pages in-process, for the commands that look at them."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.test import Client

from django_dbtune.findings import NPlusOneFinding


def client() -> Client:
    """A test client that sends a host name the site accepts (no DisallowedHost)."""
    return Client(HTTP_HOST=_request_host(), raise_request_exception=False)


def add_page_arguments(parser: CommandParser) -> None:
    """The URLs to request and the output format, as every page command takes them."""
    parser.add_argument("urls", nargs="+", metavar="URL", help="Paths such as /books/.")
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="Output format."
    )


def check_paths(urls: list[str]) -> None:
    for url in urls:
        if not url.startswith("/"):
            raise CommandError(f"{url!r} is not a path: give it as /path/ on this site.")


def _request_host() -> str:
    for host in settings.ALLOWED_HOSTS:
        if host != "*" and not host.startswith("*"):
            return host.lstrip(".")
    return "localhost"


def nplusone_pages(
    urls: list[str], threshold: int | None = None
) -> list[tuple[str, int, list[NPlusOneFinding]]]:
    """Each page requested in-process: (url, status, its N+1 findings)."""
    from django_dbtune.nplusone import detect

    browser = client()
    pages = []
    for url in urls:
        with detect(threshold=threshold, url=url) as report:
            response = browser.get(url)
        pages.append((url, response.status_code, report.findings))
    return pages
