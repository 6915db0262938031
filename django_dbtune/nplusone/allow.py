"""Findings a project chose to live with: allowlist rules and a baseline file."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from django_dbtune.findings import NPlusOneFinding

BASELINE_VERSION = 1


def allowed(finding: NPlusOneFinding, rules: Iterable[Mapping[str, str]]) -> bool:
    """Whether any rule matches: every key a rule names must match (shell-style patterns)."""
    values = {
        "kind": finding.kind,
        "relation": finding.relation,
        "call_site": finding.call_site or "",
        "url": finding.url or "",
    }
    return any(
        all(fnmatchcase(values[key], pattern) for key, pattern in rule.items()) for rule in rules
    )


def read_baseline(path: Path) -> frozenset[str]:
    """The findings recorded in a baseline file; a missing file is an empty baseline."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return frozenset()
    except OSError as exc:
        raise ImproperlyConfigured(f"Cannot read the N+1 baseline {path}: {exc}") from exc
    try:
        data = json.loads(text)
        keys = data["findings"]
        if data.get("version") != BASELINE_VERSION or not all(isinstance(k, str) for k in keys):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ImproperlyConfigured(
            f"{path} is not a django-dbtune N+1 baseline (a JSON object with "
            f'"version": {BASELINE_VERSION} and a "findings" list). Delete it and record it '
            "again with pytest --dbtune-nplusone-update-baseline."
        ) from None
    return frozenset(keys)


def write_baseline(path: Path, findings: Iterable[NPlusOneFinding]) -> int:
    """Record findings as the baseline; returns how many distinct ones were written."""
    keys = sorted({key for f in findings for key in (f.baseline_keys or (f.baseline_key,))})
    data = {
        "version": BASELINE_VERSION,
        "comment": "Known N+1 findings, written by django-dbtune; only new ones are reported.",
        "findings": keys,
    }
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
    return len(keys)
