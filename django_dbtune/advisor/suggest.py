"""Which apps to check, and every finding of the static rules about them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from django.apps import apps

from django_dbtune.advisor.admin_usage import admin_usages
from django_dbtune.advisor.candidates import index_findings
from django_dbtune.advisor.drift import drift
from django_dbtune.advisor.queryset_chains import scan
from django_dbtune.advisor.schema_rules import missing_fk_indexes, redundant_indexes
from django_dbtune.conf import conf
from django_dbtune.findings import SEVERITIES, Finding
from django_dbtune.project import is_project_file
from django_dbtune.schema import model_schemas


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """One line per call site left out (``file:line: why``)."""


def project_app_labels() -> list[str]:
    """The apps that live in the project, not in an installed package."""
    return [
        config.label
        for config in apps.get_app_configs()
        if is_project_file(config.path) and list(config.get_models())
    ]


def static_report(
    app_labels: Iterable[str], database: str, *, read_database: bool = True
) -> Report:
    """The models' own rules, and the indexes the project's code asks for."""
    schemas = {
        schema.label: schema
        for schema in model_schemas(app_labels, database, read_database=read_database)
    }
    report = Report()
    for schema in schemas.values():
        report.findings.extend(missing_fk_indexes(schema))
        report.findings.extend(redundant_indexes(schema))
        report.findings.extend(drift(schema))
    scanned = scan(conf.PROJECT_ROOT)
    report.skipped_files = scanned.skipped
    report.warnings.extend(scanned.notes)
    app_labels = {schema.model._meta.app_label for schema in schemas.values()}
    usages = scanned.usages + admin_usages(app_labels)
    report.findings.extend(index_findings(usages, schemas, report.warnings))
    report.findings = one_per_index(report.findings)
    return report


def one_per_index(findings: list[Finding]) -> list[Finding]:
    """A foreign key's missing index and a composite that leads with it are one index to
    add: the composite serves the key's joins and cascades too, so it carries both."""
    serving: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        index = finding.index
        plain = index is not None and index.condition is None and not index.opclasses
        if finding.kind in LEADING_KINDS and plain and index is not None and index.fields:
            serving.setdefault((finding.model, index.fields[0].lstrip("-")), finding)
    absorbed: dict[int, list[Finding]] = {}
    kept = []
    for finding in findings:
        key = (finding.model, finding.fields[0]) if finding.fields else None
        target = serving.get(key) if finding.kind == "missing_fk_index" and key else None
        if target is None:
            kept.append(finding)
        else:
            absorbed.setdefault(id(target), []).append(finding)
    merged = []
    for finding in kept:
        for key_finding in absorbed.get(id(finding), []):
            said, _, why = finding.message.partition(" Ranked ")
            key_said, _, key_why = key_finding.message.partition(" Ranked ")
            # The merged finding takes the higher rank, and the reason that gave it.
            top = max(finding, key_finding, key=lambda f: SEVERITIES.index(f.severity))
            ranked = why if top is finding else key_why
            also = f"It also serves the foreign key: {key_said}"
            finding = replace(
                finding,
                severity=top.severity,
                message=f"{said} {also} Ranked {ranked}",
                evidence=(*finding.evidence, *key_finding.evidence),
            )
        merged.append(finding)
    return merged


LEADING_KINDS = frozenset({"composite_candidate", "unindexed_filter"})
