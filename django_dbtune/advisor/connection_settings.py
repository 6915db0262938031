"""Connection settings that cost time on every request: a new connection per request, or
kept connections without health checks (``index_health`` and the system checks say so)."""

from __future__ import annotations

from django.db import connections

from django_dbtune.findings import Finding, Severity


def connection_findings(alias: str) -> list[Finding]:
    """Connection settings that cost time on every request."""
    connection = connections[alias]
    if connection.vendor == "sqlite":
        return []  # opening a SQLite file is cheap
    settings = connection.settings_dict
    max_age = settings.get("CONN_MAX_AGE", 0)
    pooled = bool((settings.get("OPTIONS") or {}).get("pool"))
    if max_age == 0 and not pooled:
        advice = (
            "Keep connections open: CONN_MAX_AGE = 600 (seconds) with CONN_HEALTH_CHECKS = "
            "True"
            + (
                ', or a connection pool: OPTIONS = {"pool": True} (Django 5.1+, psycopg 3, '
                "pip install 'psycopg[pool]')."
                if connection.vendor == "postgresql"
                else "."
            )
        )
        return [
            _setting(
                alias,
                "connection_per_request",
                "medium",
                f"DATABASES[{alias!r}] opens a new connection for every request "
                "(CONN_MAX_AGE = 0 and no pool): each costs a TCP and authentication round "
                "trip before the first query.",
                advice,
            )
        ]
    if max_age != 0 and not pooled and not settings.get("CONN_HEALTH_CHECKS", False):
        return [
            _setting(
                alias,
                "connection_health_checks",
                "low",
                f"DATABASES[{alias!r}] keeps connections open (CONN_MAX_AGE = {max_age}) "
                "without CONN_HEALTH_CHECKS: a connection the server closed fails the first "
                "query of the next request.",
                "Set CONN_HEALTH_CHECKS = True.",
            )
        ]
    return []


def _setting(alias: str, kind: str, severity: Severity, message: str, advice: str) -> Finding:
    return Finding(
        kind=kind,
        severity=severity,
        model="settings.DATABASES",
        fields=(),
        database=alias,
        message=message,
        advice=advice,
    )
