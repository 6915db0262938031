#!/usr/bin/env python3
"""Score django-dbtune's ``suggest_indexes`` against the corpus's hand-made index truth.

    python corpus/index_score.py [PROJECT ...] [--format text|json|rst] [--reuse]
                                 [--timeout SECONDS]

For every project with an ``indexes.toml`` (all of them when none is named), runs
``corpus/<project>/run suggest_indexes --format json`` in the project's own environment (the
project's own apps, as a new user would run it) and compares its suggestions with the truth:

* a ``[[missing]]`` entry is **found** when a suggested index is on the same model, is of the
  same family (plain b-tree, trigram, or other GIN: a trigram index does not serve an equality
  filter, a b-tree does not serve ``icontains``) and leads with the entry's first field; it is
  found **exactly** when the entry's fields are the leading fields of the suggestion, in order,
  and, for an entry with a ``condition``, the suggestion is partial too (both conditions are
  shown for a person to compare: Q syntax and SQL cannot be compared mechanically); a partial
  index whose one equality condition is on the entry's first field (``WHERE status = 'Open'``
  for the entry ``(status, date_created)``) finds it too, not exactly;
* a suggestion with exactly the fields of a ``[[not_missing]]`` entry (same model, same
  family, not partial: the entries name full indexes) is **wrong**: the truth says it
  exists or is not worth adding (it then finds no entry, even one it leads like: an
  existing FK index does not find the composite that extends it);
* any other suggestion is an **extra**, listed for a person to judge.

Field names are compared without direction (``-date`` is ``date``: a b-tree is read both ways)
and without a trailing ``_id`` (``author`` is ``author_id``). Only findings that propose an
index are suggestions; the others (redundant or duplicate indexes, drift) are counted by kind.

The raw output is kept in ``<work>/<project>/score/suggest_indexes.json``; ``--reuse`` scores it
again without running anything. A ``suggest_indexes`` that fails (a traceback, a timeout, no
JSON) is reported with the last lines of its output, and the other projects are scored.

Needs only Python 3.11+ (the standard library). Exit status 0, whatever the scores; 2 when the
scorer itself cannot run (a bad argument, an unknown project).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # before Python 3.11
    sys.exit("index_score.py needs Python 3.11 or newer (for tomllib).")

from corpus_runs import (
    ScorerError,
    chosen_projects,
    parse_json_out,
    rst_list_table,
    run,
    tail,
    work_dir,
)

HERE = Path(__file__).resolve().parent
CORPUS = HERE
GRADES = ("hot", "warm", "cold")
TRUTH_FILE = "indexes.toml"
RAW_FILE = "suggest_indexes.json"


# --- the truth ------------------------------------------------------------------------------


@dataclass
class Missing:
    model: str
    fields: list[str]
    grade: str
    condition: str = ""
    opclass: str = ""
    query: str = ""
    page: str = ""
    proven: str = ""
    found_by: str = "hand"


@dataclass
class NotMissing:
    model: str
    fields: list[str]
    why: str = ""
    opclass: str = ""


@dataclass
class Truth:
    project: str
    missing: list[Missing]
    not_missing: list[NotMissing]
    notes: str


def load_truth(path: Path) -> Truth:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    missing = []
    for raw in data.get("missing", []):
        lacking = [key for key in ("model", "fields", "grade") if not raw.get(key)]
        if lacking:
            raise ValueError(f"a [[missing]] entry lacks {', '.join(lacking)}: {raw}")
        if raw["grade"] not in GRADES:
            raise ValueError(f"grade {raw['grade']!r} is not one of {', '.join(GRADES)}: {raw}")
        missing.append(
            Missing(
                model=str(raw["model"]),
                fields=[str(f) for f in raw["fields"]],
                grade=str(raw["grade"]),
                condition=str(raw.get("condition", "")),
                opclass=str(raw.get("opclass", "")),
                query=str(raw.get("query", "")),
                page=str(raw.get("page", "")),
                proven=str(raw.get("proven", "")),
                found_by=str(raw.get("found_by", "hand")),
            )
        )
    not_missing = []
    for raw in data.get("not_missing", []):
        if not raw.get("model") or not raw.get("fields"):
            raise ValueError(f"a [[not_missing]] entry lacks model or fields: {raw}")
        not_missing.append(
            NotMissing(
                model=str(raw["model"]),
                fields=[str(f) for f in raw["fields"]],
                why=str(raw.get("why", "")),
                opclass=str(raw.get("opclass", "")),
            )
        )
    if data.get("project", path.parent.name) != path.parent.name:
        raise ValueError(
            f"project = {data.get('project')!r}, but the directory is {path.parent.name!r}"
        )
    return Truth(path.parent.name, missing, not_missing, str(data.get("notes", "")))


# --- matching -------------------------------------------------------------------------------


def norm_field(name: str) -> str:
    name = name.strip().lstrip("-").lower()
    return name[: -len("_id")] if name.endswith("_id") and name != "_id" else name


def norm_fields(fields: list[str]) -> list[str]:
    return [norm_field(f) for f in fields]


def family(opclasses: list[str], sql: str | None = None) -> str:
    """The kind of index, as far as serving a query goes."""
    if any("trgm" in op for op in opclasses):
        return "trigram"
    if sql and " using gin" in sql.lower():
        return "gin"
    return "btree"  # pattern opclasses (varchar_pattern_ops) are b-trees too


@dataclass
class Suggestion:
    model: str
    fields: list[str]
    opclasses: list[str]
    condition: str | None
    sql: str | None
    kind: str
    severity: str
    evidence: str
    raw: dict[str, Any]

    @property
    def family(self) -> str:
        return family(self.opclasses, self.sql)

    def label(self) -> str:
        text = f"{self.model} ({', '.join(self.fields)})"
        if self.opclasses:
            text += f" [{', '.join(self.opclasses)}]"
        if self.condition:
            text += f" WHERE {self.condition}"
        return text


def suggestions_of(findings: list[dict[str, Any]]) -> tuple[list[Suggestion], dict[str, int]]:
    """Findings that propose an index, and a count of the other findings by kind."""
    found: list[Suggestion] = []
    others: dict[str, int] = {}
    for f in findings:
        index = f.get("index")
        if not isinstance(index, dict):
            # drop advice, drift, or a filter no index can serve here (advice only)
            kind = str(f.get("kind"))
            kind += " (advice only)" if kind == "unindexed_filter" else ""
            others[kind] = others.get(kind, 0) + 1
            continue
        evidence = f.get("evidence") or []
        first = evidence[0] if evidence else {}
        where = f"{first.get('file')}:{first.get('line')}" if first else ""
        if len(evidence) > 1:
            where += f" (+{len(evidence) - 1})"
        found.append(
            Suggestion(
                model=str(f.get("model", "")),
                fields=[str(x) for x in (index.get("fields") or f.get("fields") or [])],
                opclasses=[str(x) for x in index.get("opclasses") or []],
                condition=index.get("condition") or None,
                sql=index.get("sql") or None,
                kind=str(f.get("kind", "")),
                severity=str(f.get("severity", "")),
                evidence=where,
                raw=f,
            )
        )
    return found, others


def condition_column(condition: str | None) -> str | None:
    """The column of a partial index's one equality condition (``Q(status="Open")``,
    ``Q(date_read__isnull=True)``), else None."""
    match = re.fullmatch(r"Q\((\w+?)(?:__isnull)?=[^,()]*\)", condition or "")
    return norm_fields([match.group(1)])[0] if match else None


def finds(s: Suggestion, m: Missing) -> str | None:
    """ "exact", "leading" or None: how a suggestion matches a [[missing]] entry."""
    if s.model.lower() != m.model.lower() or s.family != family([m.opclass] if m.opclass else []):
        return None
    have, want = norm_fields(s.fields), norm_fields(m.fields)
    column = condition_column(s.condition)
    if have and want[0] != have[0] and column == want[0] and not m.condition:
        # A partial index WHERE status = 'Open' on (date) serves status = 'Open' AND a
        # date range as the composite (status, date) does: found, not exact.
        return "leading"
    if not have or have[0] != want[0]:
        return None
    exact = have[: len(want)] == want and (not m.condition or bool(s.condition))
    return "exact" if exact else "leading"


def is_wrong(s: Suggestion, n: NotMissing) -> bool:
    return (
        s.model.lower() == n.model.lower()
        and s.family == family([n.opclass] if n.opclass else [])
        and norm_fields(s.fields) == norm_fields(n.fields)
        and not s.condition  # a partial index holds other rows than the full one named
    )


# --- running suggest_indexes ----------------------------------------------------------------


def run_suggest(project: str, reuse: bool, timeout: float) -> dict[str, Any]:
    raw = work_dir(project) / "score" / RAW_FILE
    if reuse and raw.exists():
        saved: dict[str, Any] = json.loads(raw.read_text())
        return saved
    cmd = [str(CORPUS / project / "run"), "suggest_indexes", "--format", "json"]
    started = time.monotonic()
    code, stdout, stderr = run(cmd, timeout)
    saved = {
        "command": cmd[1:],
        "returncode": code,
        "seconds": round(time.monotonic() - started, 1),
        "stdout": stdout,
        "stderr": stderr,
    }
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(saved, indent=1))
    return saved


# --- scoring one project --------------------------------------------------------------------


def score_project(project: str, args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"project": project, "state": "scored"}
    truth_path = CORPUS / project / TRUTH_FILE
    if not truth_path.exists():
        return {**report, "state": "no truth", "message": f"no corpus/{project}/{TRUTH_FILE}"}
    try:
        truth = load_truth(truth_path)
    except (ValueError, tomllib.TOMLDecodeError, TypeError) as error:
        return {**report, "state": "bad truth", "message": f"{TRUTH_FILE}: {error}"}
    set_up = (work_dir(project) / "venv" / "bin" / "python").exists() and (
        work_dir(project) / "src"
    ).is_dir()
    if not set_up and not (args.reuse and (work_dir(project) / "score" / RAW_FILE).exists()):
        return {
            **report,
            "state": "not set up",
            "message": f"not set up: run corpus/{project}/setup",
        }

    saved = run_suggest(project, args.reuse, args.timeout)
    report["seconds"] = saved.get("seconds")
    report["returncode"] = saved.get("returncode")
    report["warnings"] = [
        line for line in saved.get("stderr", "").splitlines() if line.startswith("warning:")
    ]
    try:
        if saved.get("returncode") not in (0, None):
            raise ValueError(f"exit status {saved.get('returncode')}")
        findings = parse_json_out(saved.get("stdout", ""))
        if not isinstance(findings, list):
            raise ValueError("the JSON is not a list of findings")
    except ValueError as error:
        report.update(
            state="failed",
            message=f"suggest_indexes failed ({error})",
            failure=tail(saved.get("stderr", "")) or tail(saved.get("stdout", "")),
            truth_counts=grade_counts(truth.missing),
            not_missing=len(truth.not_missing),
        )
        return report

    suggestions, others = suggestions_of(findings)
    # A suggestion the truth lists as not missing is wrong, even where it leads like an
    # entry: an FK index that exists does not find the composite that extends it.
    wrong_why = {
        number: next((n.why for n in truth.not_missing if is_wrong(s, n)), None)
        for number, s in enumerate(suggestions)
    }
    entries = []
    matched: set[int] = set()
    for m in truth.missing:
        hits = []
        for number, s in enumerate(suggestions):
            if wrong_why[number] is not None:
                continue
            how = finds(s, m)
            if how:
                hits.append((number, how))
                matched.add(number)
        best = "exact" if any(h == "exact" for _, h in hits) else ("leading" if hits else "")
        entries.append(
            {
                "model": m.model,
                "fields": m.fields,
                "condition": m.condition,
                "opclass": m.opclass,
                "grade": m.grade,
                "page": m.page,
                "found_by": m.found_by,
                "found": bool(hits),
                "exact": best == "exact",
                "suggestions": [
                    {
                        "label": suggestions[n].label(),
                        "match": h,
                        "kind": suggestions[n].kind,
                        "severity": suggestions[n].severity,
                        "evidence": suggestions[n].evidence,
                        "condition": suggestions[n].condition,
                    }
                    for n, h in hits
                ],
            }
        )
    wrong, extras = [], []
    for number, s in enumerate(suggestions):
        if number in matched:
            continue
        item = {
            "label": s.label(),
            "kind": s.kind,
            "severity": s.severity,
            "evidence": s.evidence,
        }
        reason = wrong_why[number]
        if reason is not None:
            wrong.append({**item, "why": reason})
        else:
            extras.append(item)

    summary: dict[str, Any] = {"truth": len(truth.missing), "not_missing": len(truth.not_missing)}
    for grade in GRADES:
        of_grade = [e for e in entries if e["grade"] == grade]
        summary[f"{grade}_truth"] = len(of_grade)
        summary[f"{grade}_found"] = sum(e["found"] for e in of_grade)
        summary[f"{grade}_exact"] = sum(e["exact"] for e in of_grade)
    summary["found"] = sum(e["found"] for e in entries)
    summary["exact"] = sum(e["exact"] for e in entries)
    summary["suggestions"] = len(suggestions)
    summary["matched"] = len(matched)
    summary["wrong"] = len(wrong)
    summary["extras"] = len(extras)
    summary["other_findings"] = sum(others.values())
    report.update(
        summary=summary,
        entries=entries,
        wrong=wrong,
        extras=extras,
        other_kinds=others,
        severities_of_found={
            grade: sorted(
                {s["severity"] for e in entries if e["grade"] == grade for s in e["suggestions"]}
            )
            for grade in GRADES
        },
    )
    return report


def grade_counts(missing: list[Missing]) -> dict[str, int]:
    return {grade: sum(m.grade == grade for m in missing) for grade in GRADES}


# --- output ---------------------------------------------------------------------------------


def ratio(part: int, whole: int) -> str:
    return f"{part}/{whole}" if whole else "-"


def precision(s: dict[str, Any]) -> str:
    judged = s["matched"] + s["wrong"]
    return f"{s['matched']}/{judged} ({100 * s['matched'] / judged:.0f}%)" if judged else "-"


HEADERS = [
    "project",
    "missing (hot/warm/cold)",
    "found",
    "exact",
    "hot found",
    "warm found",
    "cold found",
    "suggestions",
    "matched",
    "wrong",
    "extras",
    "precision (matched / matched+wrong)",
]


def row(name: str, s: dict[str, Any]) -> list[str]:
    return [
        name,
        f"{s['truth']} ({s['hot_truth']}/{s['warm_truth']}/{s['cold_truth']})",
        ratio(s["found"], s["truth"]),
        ratio(s["exact"], s["truth"]),
        ratio(s["hot_found"], s["hot_truth"]),
        ratio(s["warm_found"], s["warm_truth"]),
        ratio(s["cold_found"], s["cold_truth"]),
        str(s["suggestions"]),
        str(s["matched"]),
        str(s["wrong"]),
        str(s["extras"]),
        precision(s),
    ]


def totals(reports: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r["summary"] for r in reports if r["state"] == "scored"]
    if len(scored) < 2:
        return None
    return {key: sum(s[key] for s in scored) for key in scored[0]}


def table_rows(reports: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in reports:
        if r["state"] == "scored":
            rows.append(row(r["project"], r["summary"]))
        else:
            counts = r.get("truth_counts")
            truth = (
                f"{sum(counts.values())} ({counts['hot']}/{counts['warm']}/{counts['cold']})"
                if counts
                else ""
            )
            rows.append([r["project"], truth, r["message"]] + [""] * (len(HEADERS) - 3))
    total = totals(reports)
    if total:
        rows.append(row("total", total))
    return rows


def text_table(rows: list[list[str]]) -> str:
    short = [
        "project",
        "missing h/w/c",
        "found",
        "exact",
        "hot",
        "warm",
        "cold",
        "suggested",
        "matched",
        "wrong",
        "extras",
        "precision",
    ]
    full = [r for r in rows if r[3] != "" or r[0] == "total"]
    widths = [max([len(short[i]), *(len(r[i]) for r in full)]) for i in range(len(short))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(short), "-" * len(line(short))]
    for r in rows:
        if r[3] == "" and r[0] != "total":
            out.append(f"{r[0].ljust(widths[0])}  {r[1]}  {r[2]}".rstrip())
        else:
            if r[0] == "total":
                out.append("-" * len(line(short)))
            out.append(line(r))
    return "\n".join(out)


def text_report(reports: list[dict[str, Any]]) -> str:
    out = [text_table(table_rows(reports))]
    out.append(
        "\nfound: a suggestion on the model, of the same family, leading with the entry's first "
        "field;\nexact: with all the entry's fields leading, in order. precision counts only "
        "what the truth judges."
    )
    for r in reports:
        out.append("")
        out.append(f"== {r['project']}")
        if r["state"] == "failed":
            out.append(f"  {r['message']}; last lines:")
            out.extend(f"    {line}" for line in r["failure"].splitlines())
            continue
        if r["state"] != "scored":
            out.append(f"  {r['message']}")
            continue
        s = r["summary"]
        out.append(
            f"  suggest_indexes: {s['suggestions']} suggested indexes, "
            f"{s['other_findings']} other findings"
            + (
                f" ({', '.join(f'{k} {v}' for k, v in sorted(r['other_kinds'].items()))})"
                if r["other_kinds"]
                else ""
            )
            + f", {r['seconds']} s"
        )
        for warning in r["warnings"]:
            out.append(f"  {warning}")
        misses = [e for e in r["entries"] if not e["found"]]
        if misses:
            out.append(f"  missed {len(misses)} of {s['truth']}:")
            for e in misses:
                out.append(f"    [{e['grade']}] {entry_label(e)}  ({e['page']})")
        else:
            out.append(f"  missed none of {s['truth']}")
        found = [e for e in r["entries"] if e["found"]]
        if found:
            out.append("  found:")
            for e in found:
                said = "; ".join(
                    f"{x['label']} {x['kind']} [{x['severity']}] at {x['evidence']}"
                    + (" (leading only)" if x["match"] == "leading" else "")
                    + (f" condition {x['condition']!r}" if e["condition"] else "")
                    for x in e["suggestions"]
                )
                out.append(f"    [{e['grade']}] {entry_label(e)}: {said}")
        if r["wrong"]:
            out.append("  wrong (the truth lists them as not missing):")
            for w in r["wrong"]:
                where = f"[{w['severity']}] at {w['evidence']}"
                out.append(f"    {w['label']} {w['kind']} {where}: {w['why']}")
        if r["extras"]:
            out.append("  extras (not in the truth; for a person to judge):")
            for x in r["extras"]:
                out.append(f"    {x['label']} {x['kind']} [{x['severity']}] at {x['evidence']}")
    return "\n".join(out)


def entry_label(e: dict[str, Any]) -> str:
    text = f"{e['model']} ({', '.join(e['fields'])})"
    if e["opclass"]:
        text += f" [{e['opclass']}]"
    if e["condition"]:
        text += f" WHERE {e['condition']}"
    return text


def rst_report(reports: list[dict[str, Any]]) -> str:
    out = [rst_list_table("suggest_indexes against the index truth", HEADERS, table_rows(reports))]
    detail = []
    for r in reports:
        if r["state"] != "scored":
            continue
        for e in r["entries"]:
            verdict = (
                "exact" if e["exact"] else "found (leading field)" if e["found"] else "missed"
            )
            severities = ", ".join(sorted({x["severity"] for x in e["suggestions"]}))
            detail.append(
                [r["project"], f"``{entry_label(e)}``", e["grade"], verdict, severities or "-"]
            )
    if detail:
        out += [
            "",
            rst_list_table(
                "Each missing index of the truth",
                ["project", "index", "grade", "suggest_indexes", "severity given"],
                detail,
            ),
        ]
    failed = [r for r in reports if r["state"] == "failed"]
    for r in failed:
        out += ["", f"{r['project']}: {r['message']}::", ""]
        out += [f"   {line}" for line in r["failure"].splitlines()]
    return "\n".join(out)


def json_report(reports: list[dict[str, Any]]) -> str:
    return json.dumps({"projects": reports, "totals": totals(reports)}, indent=2)


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Score django-dbtune's suggest_indexes against the corpus's index truth "
        f"(corpus/<project>/{TRUTH_FILE})."
    )
    parser.add_argument("projects", nargs="*", help="Project directories (default: all).")
    parser.add_argument("--format", choices=("text", "json", "rst"), default="text")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Score the output saved by the last run instead of running suggest_indexes.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="Seconds suggest_indexes may take on one project (default 1800).",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
        projects = chosen_projects(CORPUS, args.projects, TRUTH_FILE)
        reports = []
        for name in projects:
            print(f"scoring {name} ...", file=sys.stderr, flush=True)
            reports.append(score_project(name, args))
    except ScorerError as error:
        print(f"index_score.py: {error}", file=sys.stderr)
        return 2
    formatter = {"text": text_report, "json": json_report, "rst": rst_report}[args.format]
    print(formatter(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
