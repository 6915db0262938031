"""Which apps to check, and every finding of the rules that read the models."""

from __future__ import annotations

import os
from collections.abc import Iterable

from django.apps import apps

from django_dbtune.advisor.models import missing_fk_indexes, redundant_indexes
from django_dbtune.conf import conf
from django_dbtune.findings import Finding
from django_dbtune.schema import model_schemas


def project_app_labels() -> list[str]:
    """The apps that live in the project, not in an installed package."""
    root = str(conf.PROJECT_ROOT) + os.sep
    return [
        config.label
        for config in apps.get_app_configs()
        if str(config.path).startswith(root)
        and "site-packages" not in str(config.path)
        and list(config.get_models())
    ]


def model_findings(
    app_labels: Iterable[str], database: str, *, read_database: bool = True
) -> list[Finding]:
    findings: list[Finding] = []
    for schema in model_schemas(app_labels, database, read_database=read_database):
        findings.extend(missing_fk_indexes(schema))
        findings.extend(redundant_indexes(schema))
    return findings
