#!/usr/bin/env python3
"""Score django-dbtune's N+1 detector, and django-zeal's, against the corpus's ground truth.

    python corpus/score.py [PROJECT ...] [--format text|json|rst] [--tools dbtune,zeal]
                           [--reuse] [--timeout SECONDS]

For every project with a ``truth.toml`` (all of them when none is named), the pages of the
truth are requested by both tools inside the project's own environment:

* django-dbtune: ``corpus/<project>/run dbtune_nplusone URL ... [--user U] --format json
  --allow-status ...``, once per distinct user;
* django-zeal: ``corpus/<project>/run shell -c ...`` running ``corpus/zeal_probe.py``, which
  requests the same pages with Django's test client under zeal's detection, and also resolves
  every relation name to the model field it means (so spellings can be compared).

Then each ``[[nplusone]]`` entry of the truth is looked for in what each tool said (see
corpus/README.md, "How scoring works"). The raw outputs are kept in the project's work
directory (``<work>/<project>/score/``); ``--reuse`` scores them again without running anything.

Needs only Python 3.11+ (the standard library). Exit status 0, whatever the scores; 2 when the
scorer itself cannot run (a bad argument, an unknown project).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # before Python 3.11
    sys.exit("score.py needs Python 3.11 or newer (for tomllib).")

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
CORPUS = HERE  # the project definitions (--corpus)
PROBE = HERE / "zeal_probe.py"
TOOLS = ("dbtune", "zeal")


# --- the ground truth -----------------------------------------------------------------------


@dataclass
class Page:
    url: str
    user: str | None = None
    status: int = 200
    queries: int | None = None
    silent: bool = False


@dataclass
class Entry:
    page: str
    relation: str
    fix: str = ""
    fix_site: str = ""
    trigger: str = ""
    before: int | None = None
    after: int | None = None
    found_by: str = "hand"
    note: str = ""


@dataclass
class Truth:
    project: str
    pages: list[Page]
    entries: list[Entry]
    meta: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    isolate_pages: bool = False
    """Request each page in a process of its own (``isolate_pages = true`` in the truth)."""

    def page(self, url: str) -> Page:
        return next(page for page in self.pages if page.url == url)


def load_truth(path: Path) -> Truth:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    meta = {k: v for k, v in data.items() if not isinstance(v, list)}
    pages: list[Page] = []
    problems: list[str] = []
    for raw in data.get("pages", []):
        if "url" not in raw:
            raise ValueError(f"a [[pages]] entry has no url: {raw}")
        pages.append(
            Page(
                url=str(raw["url"]),
                user=raw.get("user") or None,
                status=int(raw.get("status", 200)),
                queries=raw.get("queries"),
                silent=bool(raw.get("silent", False)),
            )
        )
    entries: list[Entry] = []
    known = {page.url for page in pages}
    for raw in data.get("nplusone", []):
        missing = [key for key in ("page", "relation") if key not in raw]
        if missing:
            raise ValueError(f"a [[nplusone]] entry lacks {', '.join(missing)}: {raw}")
        entry = Entry(
            page=str(raw["page"]),
            relation=str(raw["relation"]),
            fix=str(raw.get("fix", "")),
            fix_site=str(raw.get("fix_site", "")),
            trigger=str(raw.get("trigger", "")),
            before=raw.get("before"),
            after=raw.get("after"),
            found_by=str(raw.get("found_by", "hand")),
            note=str(raw.get("note", "")),
        )
        entries.append(entry)
        if entry.page not in known:
            known.add(entry.page)
            pages.append(Page(url=entry.page))
            problems.append(
                f"truth: {entry.page} has an [[nplusone]] entry but no [[pages]] entry "
                "(requested anonymously, expecting 200)"
            )
    for page in pages:
        if page.silent and any(e.page == page.url for e in entries):
            problems.append(f"truth: {page.url} is silent but has [[nplusone]] entries")
    if data.get("project", path.parent.name) != path.parent.name:
        problems.append(
            f"truth: project = {data.get('project')!r}, but the directory is {path.parent.name!r}"
        )
    isolate = bool(data.get("isolate_pages", False))
    return Truth(path.parent.name, pages, entries, meta, problems, isolate)


# --- names and lines ------------------------------------------------------------------------


def site_parts(text: str | None) -> tuple[list[str], int] | None:
    """("a/b/views.py:12 in func" or "x.html:7") -> (["a", "b", "views.py"], 12)."""
    if not text:
        return None
    text = text.strip().split(" in ", 1)[0].strip()
    path, sep, line = text.rpartition(":")
    if not sep or not line.strip().isdigit():
        return None
    parts = [p for p in path.strip().replace("\\", "/").split("/") if p not in ("", ".")]
    return (parts, int(line)) if parts else None


def suffix_match(a: list[str], b: list[str]) -> bool:
    """One path is the other's tail, component by component (roots differ between tools)."""
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return long[len(long) - len(short) :] == short


def same_site(a: str | None, b: str | None) -> bool:
    pa, pb = site_parts(a), site_parts(b)
    return bool(pa and pb and pa[1] == pb[1] and suffix_match(pa[0], pb[0]))


def in_class(fix_site: str, where: dict[str, Any] | None) -> bool:
    """The truth's fix_site lies inside the class django-dbtune named (Django builds the
    queryset there: a generic view, a ModelAdmin, a viewset)."""
    site = site_parts(fix_site)
    if not site or not where:
        return False
    parts = [p for p in str(where["file"]).replace("\\", "/").split("/") if p]
    return suffix_match(site[0], parts) and where["start"] <= site[1] <= where["end"]


OWNER = re.compile(r"^([\w.]+) \(Django builds its queryset\)$")


def owner_classes(finding: dict[str, Any]) -> list[str]:
    names = []
    match = OWNER.match(str(finding.get("queryset_site") or ""))
    if match:
        names.append(match.group(1))
    target = finding.get("target") or {}
    if isinstance(target, dict) and target.get("owner"):
        names.append(str(target["owner"]))
    return names


class Names:
    """Relation names resolved by the probe inside the project's Django."""

    def __init__(self, relations: dict[str, Any], classes: dict[str, Any]):
        self.relations = relations
        self.classes = classes

    def ident(self, text: str) -> str | None:
        return (self.relations.get(text) or {}).get("id")

    def models(self, text: str) -> set[str]:
        return set((self.relations.get(text) or {}).get("models") or [])

    def same(self, a: str, b: str) -> bool:
        if a.lower() == b.lower():
            return True
        ia, ib = self.ident(a), self.ident(b)
        return ia is not None and ia == ib

    def match(self, found: str, truth: str) -> str | None:
        """How a tool's relation name matches the truth's: "same" (one relation, however
        spelled), "model" (one side names only a model, and it is the other's), "opposite"
        (one foreign key named from its two ends: the caller must check the lines), or None."""
        if found.endswith(".get()") or truth.count(".") == 1:
            # zeal names only the model a per-row .get() queried; the truth names only a
            # model for a per-row query that filters on no field
            if found.endswith(".get()"):
                queried = self.models(found) or {found[: -len(".get()")].lower()}
            else:
                first = (self.relations.get(found) or {}).get("models") or []
                queried = {found.rsplit(".", 1)[0].lower(), *first[:1]}
            if truth.count(".") == 1:
                wanted = {truth.lower(), *self.models(truth)}
            else:
                wanted = self.models(truth) or {truth.rsplit(".", 1)[0].lower()}
            return "model" if queried & wanted else None
        if self.same(found, truth):
            return "same"
        ia, ib = self.ident(found), self.ident(truth)
        if ia and ib and ia.removeprefix("reverse:") == ib.removeprefix("reverse:"):
            return "opposite"
        return None


def judged(names: Names, relations: list[str], site: str | None, entry: Entry) -> str | None:
    """How a finding (its relations, its trigger line) matches a truth entry, or None. A
    relation named from the other end of its foreign key counts only at the truth's trigger
    line: the same per-row loads, seen from the other side."""
    kinds = {names.match(relation, entry.relation) for relation in relations}
    for kind in ("same", "model"):
        if kind in kinds:
            return kind
    if "opposite" in kinds and same_site(site, entry.trigger):
        return "opposite"
    return None


def dbtune_relations(finding: dict[str, Any]) -> list[str]:
    relations = finding.get("relations")
    if isinstance(relations, list) and relations:
        return [str(r) for r in relations]
    return [str(finding.get("relation", ""))]


def reaches(proof: dict[str, Any], entry: Entry | None = None, alone: bool = False) -> bool:
    """A proven fix reached the hand-measured count: by itself, or (unless ``alone``) with
    the proven fixes of the other N+1s of the same function applied at once (the hand fix
    of one loop is one edit). When the proof's re-run counted more queries before any fix
    than the hand count did, the hand count allows that many more: the re-run sends the
    cookies the first response set (Oscar's product page then reads its recently-viewed
    history, one query the hand count from a fresh client did not run)."""
    if proof.get("verdict") != "proven":
        return False
    if entry is None or entry.after is None:
        return True
    allowed = entry.after
    before = proof.get("before")
    if entry.before is not None and isinstance(before, int) and before > entry.before:
        allowed += before - entry.before
    counts = [proof.get("after")] + ([] if alone else [proof.get("together")])
    return any(count is not None and count <= allowed for count in counts)


def proof_of(finding: dict[str, Any]) -> dict[str, Any]:
    proof = finding.get("proof")
    if not isinstance(proof, dict) or not proof.get("verdict"):
        return {"verdict": "not_tried"}
    return proof


# --- running the tools ----------------------------------------------------------------------


def run_script(project: str) -> Path:
    return CORPUS / project / "run"


def user_slug(user: str | None) -> str:
    return "anonymous" if user is None else re.sub(r"[^\w.-]", "_", user)


def run_dbtune(truth: Truth, out: Path, reuse: bool, timeout: float) -> dict[str, Any]:
    """{"pages": {url: page json}, "errors": [...], "seconds": float}."""
    result: dict[str, Any] = {"pages": {}, "errors": [], "seconds": 0.0}
    groups: dict[tuple[str | None, str], list[Page]] = {}
    for number, page in enumerate(truth.pages):
        # isolate_pages: one process per page, as the truth was measured (a project whose
        # caches fill on the first page would show later pages cheaper than they are).
        key = (page.user, str(number) if truth.isolate_pages else "")
        groups.setdefault(key, []).append(page)
    for (user, number), pages in groups.items():
        raw = out / f"dbtune-{user_slug(user)}{'-' + number if number else ''}.json"
        if reuse and raw.exists():
            saved = json.loads(raw.read_text())
        else:
            statuses = sorted({p.status for p in pages if not 200 <= p.status < 300})
            cmd = [str(run_script(truth.project)), "dbtune_nplusone", *[p.url for p in pages]]
            if user is not None:
                cmd += ["--user", user]
            cmd += ["--format", "json"]
            if statuses:
                cmd += ["--allow-status", *map(str, statuses)]  # last: it takes every number
            started = time.monotonic()
            code, stdout, stderr = run(cmd, timeout)
            saved = {
                "command": cmd[1:],
                "returncode": code,
                "seconds": round(time.monotonic() - started, 1),
                "stdout": stdout,
                "stderr": stderr,
            }
            raw.write_text(json.dumps(saved, indent=1))
        result["seconds"] += saved.get("seconds", 0.0)
        try:
            data = parse_json_out(saved["stdout"])
            if not isinstance(data, list):
                raise ValueError("the JSON is not a list of pages")
        except ValueError as error:
            who = f" --user {user}" if user else ""
            result["errors"].append(
                f"dbtune_nplusone{who} exited {saved['returncode']} ({error}): "
                f"{tail(saved['stderr']) or tail(saved['stdout'])}"
            )
            continue
        for page in data:
            result["pages"][page.get("url")] = page
    return result


def run_probe(
    truth: Truth, dbtune: dict[str, Any], out: Path, reuse: bool, timeout: float, zeal: bool
) -> dict[str, Any]:
    if not truth.isolate_pages or len(truth.pages) < 2:
        return run_probe_pages(truth, truth.pages, dbtune, out, reuse, timeout, zeal)
    merged: dict[str, Any] = {}
    for number, page in enumerate(truth.pages):
        part = run_probe_pages(truth, [page], dbtune, out, reuse, timeout, zeal, f"-{number}")
        if not merged:
            merged = part
            continue
        if part.get("error") and not merged.get("error"):
            merged["error"] = part["error"]
        merged["seconds"] = merged.get("seconds", 0.0) + part.get("seconds", 0.0)
        for key in ("relations", "classes"):
            merged.setdefault(key, {}).update(part.get(key) or {})
        pages = (part.get("zeal") or {}).get("pages") or []
        if pages:
            if not merged.get("zeal"):
                merged["zeal"] = {}
            merged["zeal"].setdefault("pages", []).extend(pages)
    return merged


def run_probe_pages(
    truth: Truth,
    pages: list[Page],
    dbtune: dict[str, Any],
    out: Path,
    reuse: bool,
    timeout: float,
    zeal: bool,
    suffix: str = "",
) -> dict[str, Any]:
    raw = out / f"probe{suffix}.json"
    if reuse and raw.exists():
        saved: dict[str, Any] = json.loads(raw.read_text())
        return saved
    relations = [entry.relation for entry in truth.entries]
    classes: list[str] = []
    for page in dbtune["pages"].values():
        for finding in page.get("findings", []):
            relations.extend(dbtune_relations(finding))
            relations.append(str(finding.get("relation", "")))
            classes.extend(owner_classes(finding))
    request = {
        "pages": [{"url": page.url, "user": page.user} for page in pages],
        "relations": list(dict.fromkeys(r for r in relations if r)),
        "classes": list(dict.fromkeys(classes)),
        "zeal": zeal,
        "root": str(work_dir(truth.project) / "src"),  # the checkout: zeal's paths relative to it
    }
    request_file = out / f"probe-input{suffix}.json"
    output_file = out / f"probe-output{suffix}.json"
    request_file.write_text(json.dumps(request, indent=1))
    output_file.unlink(missing_ok=True)
    code = f"import runpy; runpy.run_path({str(PROBE)!r}, run_name='__main__')"
    started = time.monotonic()
    returncode, stdout, stderr = run(
        [str(run_script(truth.project)), "shell", "-c", code],
        timeout,
        env={"ZEAL_PROBE_INPUT": str(request_file), "ZEAL_PROBE_OUTPUT": str(output_file)},
    )
    seconds = round(time.monotonic() - started, 1)
    result: dict[str, Any]
    if output_file.exists():
        result = json.loads(output_file.read_text())
    else:
        result = {
            "error": f"the probe wrote nothing (manage.py shell exited {returncode}): "
            f"{tail(stderr) or tail(stdout)}"
        }
    result["seconds"] = seconds
    raw.write_text(json.dumps(result, indent=1))
    return result


# --- scoring --------------------------------------------------------------------------------


def score_project(project: str, args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"project": project, "state": "scored", "problems": []}
    truth_path = CORPUS / project / "truth.toml"
    if not truth_path.exists():
        return {**report, "state": "no truth", "message": f"no corpus/{project}/truth.toml yet"}
    try:
        truth = load_truth(truth_path)
    except (ValueError, tomllib.TOMLDecodeError, TypeError) as error:
        return {**report, "state": "bad truth", "message": f"truth.toml: {error}"}
    if not truth.pages:
        return {**report, "state": "no truth", "message": "truth.toml has no [[pages]] yet"}
    report["commit"] = truth.meta.get("commit")
    report["kind"] = truth.meta.get("kind")
    report["problems"].extend(truth.warnings)
    if (
        not (work_dir(project) / "venv" / "bin" / "python").exists()
        or not (work_dir(project) / "src").is_dir()
        or not run_script(project).exists()
    ):
        return {
            **report,
            "state": "not set up",
            "message": f"not set up: run corpus/{project}/setup",
        }
    out = work_dir(project) / "score"
    out.mkdir(parents=True, exist_ok=True)

    tools = args.tools
    dbtune: dict[str, Any] = (
        run_dbtune(truth, out, args.reuse, args.timeout)
        if "dbtune" in tools
        else {"pages": {}, "errors": [], "seconds": 0.0}
    )
    probe = run_probe(truth, dbtune, out, args.reuse, args.timeout, "zeal" in tools)
    report["seconds"] = {"dbtune": round(dbtune["seconds"], 1), "probe": probe.get("seconds")}
    if probe.get("error"):
        report["problems"].append(f"probe: {probe['error'].strip()}")
    names = Names(probe.get("relations") or {}, probe.get("classes") or {})
    report["versions"] = {"django": probe.get("django"), "python": probe.get("python")}

    zeal_data = probe.get("zeal") or {}
    zeal_pages: dict[str, Any] = {}
    zeal_state = "ran"
    if "zeal" not in tools:
        zeal_state = "skipped"
    elif not zeal_data or zeal_data.get("error"):
        zeal_state = "not run"
        report["problems"].append(
            f"zeal: {zeal_data.get('error') or 'the probe did not run zeal'}"
        )
    else:
        report["versions"]["zeal"] = zeal_data.get("version")
        zeal_pages = {page["url"]: page for page in zeal_data.get("pages", [])}
    dbtune_state = "ran" if "dbtune" in tools else "skipped"
    if dbtune_state == "ran" and not dbtune["pages"]:
        dbtune_state = "failed"
    if zeal_state == "not run" and probe.get("error"):
        zeal_state = "failed"
    report["problems"].extend(f"dbtune: {e}" for e in dbtune["errors"])
    report["tools"] = {"dbtune": dbtune_state, "zeal": zeal_state}

    # Did each page answer what the truth says? A page that did not was not really checked.
    for page in truth.pages:
        for tool, pages in (("dbtune", dbtune["pages"]), ("zeal", zeal_pages)):
            if report["tools"][tool] != "ran":
                continue
            answer = pages.get(page.url)
            if answer is None:
                report["problems"].append(f"{tool}: {page.url}: no answer")
            elif answer.get("error"):
                report["problems"].append(f"{tool}: {page.url}: {answer['error']}")
            elif answer.get("status") != page.status:
                where = f" to {answer['location']}" if answer.get("location") else ""
                report["problems"].append(
                    f"{tool}: {page.url} answered {answer.get('status')}{where}, "
                    f"the truth says {page.status}"
                )

    def dbtune_n1(url: str) -> list[dict[str, Any]]:
        page = dbtune["pages"].get(url) or {}
        return [f for f in page.get("findings", []) if f.get("kind") == "n_plus_one"]

    def zeal_n1(url: str) -> list[dict[str, Any]]:
        return list((zeal_pages.get(url) or {}).get("findings", []))

    entries = []
    for entry in truth.entries:
        row: dict[str, Any] = {
            "page": entry.page,
            "relation": entry.relation,
            "found_by": entry.found_by,
            "trigger": entry.trigger,
            "fix_site": entry.fix_site,
            "after": entry.after,
            "resolved": names.ident(entry.relation),
        }
        # django-dbtune
        how = {
            id(f): judged(names, dbtune_relations(f), f.get("call_site"), entry)
            for f in dbtune_n1(entry.page)
        }
        matched = [f for f in dbtune_n1(entry.page) if how[id(f)]]
        exact_via = []
        for f in matched:
            target = f.get("target") if isinstance(f.get("target"), dict) else {}
            target_site = (
                f"{target['file']}:{target['line']}"
                if target and target.get("file") and target.get("line")
                else None
            )
            if same_site(f.get("call_site"), entry.trigger):
                exact_via.append("trigger")
            if same_site(f.get("queryset_site"), entry.fix_site) or same_site(
                target_site, entry.fix_site
            ):
                exact_via.append("fix_site")
            if any(in_class(entry.fix_site, names.classes.get(c)) for c in owner_classes(f)):
                exact_via.append("fix_site (class)")
        proofs = [proof_of(f) for f in matched]
        proven = any(reaches(p, entry) for p in proofs)
        together = not any(reaches(p, entry, alone=True) for p in proofs) and proven
        row["dbtune"] = {
            "found": bool(matched),
            "matched_as": sorted({str(how[id(f)]) for f in matched}),
            "exact": bool(exact_via),
            "exact_via": sorted(set(exact_via)),
            "proven": proven,
            "proven_together": together,
            "proofs": proofs,
            "findings": [
                {k: f.get(k) for k in ("relation", "call_site", "queryset_site", "fix", "count")}
                for f in matched
            ],
        }
        # django-zeal
        zhow = {
            id(z): judged(names, [z["relation"]], z.get("caller"), entry)
            for z in zeal_n1(entry.page)
        }
        zmatched = [z for z in zeal_n1(entry.page) if zhow[id(z)]]
        row["zeal"] = {
            "found": bool(zmatched),
            "matched_as": sorted({str(zhow[id(z)]) for z in zmatched}),
            "exact": any(same_site(z.get("caller"), entry.trigger) for z in zmatched),
            "findings": [{k: z.get(k) for k in ("relation", "caller", "count")} for z in zmatched],
        }
        entries.append(row)
    report["entries"] = entries

    def matches_truth(url: str, relations: list[str], site: str | None) -> bool:
        return any(
            judged(names, relations, site, entry) for entry in truth.entries if entry.page == url
        )

    silent: dict[str, list[dict[str, Any]]] = {"dbtune": [], "zeal": []}
    extras: dict[str, list[dict[str, Any]]] = {"dbtune": [], "zeal": []}
    for page in truth.pages:
        for f in dbtune_n1(page.url):
            item = {
                "page": page.url,
                "relation": f.get("relation"),
                "relations": dbtune_relations(f),
                "count": f.get("count"),
                "call_site": f.get("call_site"),
                "queryset_site": f.get("queryset_site"),
                "fix": f.get("fix"),
                "proof": proof_of(f).get("verdict"),
            }
            if page.silent:
                silent["dbtune"].append(item)
            elif not matches_truth(page.url, dbtune_relations(f), f.get("call_site")):
                extras["dbtune"].append(item)
        for z in zeal_n1(page.url):
            item = {
                "page": page.url,
                "relation": z["relation"],
                "count": z.get("count"),
                "caller": z.get("caller"),
            }
            if page.silent:
                silent["zeal"].append(item)
            elif not matches_truth(page.url, [z["relation"]], z.get("caller")):
                extras["zeal"].append(item)
    report["silent_findings"] = silent
    report["extras"] = extras

    unused: dict[str, list[dict[str, Any]]] = {"proven": [], "unproven": []}
    for url, page in dbtune["pages"].items():
        for f in page.get("findings", []):
            if not str(f.get("kind", "")).startswith("unused_"):
                continue
            proof = proof_of(f)
            unused["proven" if proof.get("verdict") == "proven" else "unproven"].append(
                {
                    "page": url,
                    "kind": f.get("kind"),
                    "model": f.get("model"),
                    "path": f.get("path"),
                    "queryset_site": f.get("queryset_site"),
                    "proof": proof.get("verdict"),
                    "reason": proof.get("reason"),
                }
            )
    report["unused"] = unused

    silent_pages = [p.url for p in truth.pages if p.silent]
    report["summary"] = {
        "pages": len(truth.pages),
        "silent_pages": len(silent_pages),
        "truth": len(entries),
        "dbtune_found": sum(e["dbtune"]["found"] for e in entries),
        "dbtune_exact": sum(e["dbtune"]["exact"] for e in entries),
        "dbtune_proven": sum(e["dbtune"]["proven"] for e in entries),
        "zeal_found": sum(e["zeal"]["found"] for e in entries),
        "zeal_exact": sum(e["zeal"]["exact"] for e in entries),
        "dbtune_silent_violated": len({i["page"] for i in silent["dbtune"]}),
        "zeal_silent_violated": len({i["page"] for i in silent["zeal"]}),
        "dbtune_extras": len(extras["dbtune"]),
        "zeal_extras": len(extras["zeal"]),
        "unused_proven": len(unused["proven"]),
        "unused_unproven": len(unused["unproven"]),
    }
    report["misses"] = {
        tool: [
            {"page": e["page"], "relation": e["relation"], "found_by": e["found_by"]}
            for e in entries
            if not e[tool]["found"]
        ]
        for tool in TOOLS
        if report["tools"][tool] == "ran"
    }
    return report


SUMMARY_KEYS = (
    "truth",
    "dbtune_found",
    "dbtune_exact",
    "dbtune_proven",
    "zeal_found",
    "zeal_exact",
    "silent_pages",
    "dbtune_silent_violated",
    "zeal_silent_violated",
    "dbtune_extras",
    "zeal_extras",
    "unused_proven",
    "unused_unproven",
)


def totals(reports: list[dict[str, Any]]) -> dict[str, int]:
    scored = [r for r in reports if r["state"] == "scored"]
    result = {key: sum(r["summary"][key] for r in scored) for key in SUMMARY_KEYS}
    result["projects"] = len(scored)
    for tool in TOOLS:  # the N+1s of the projects each tool really ran on
        ran = [r for r in scored if r["tools"][tool] == "ran"]
        result[f"{tool}_projects"] = len(ran)
        result[f"{tool}_truth"] = sum(r["summary"]["truth"] for r in ran)
    return result


# --- output ---------------------------------------------------------------------------------

HEADERS = (
    "project",
    "N+1s in truth",
    "dbtune found",
    "dbtune exact line",
    "dbtune fix proven",
    "zeal found",
    "zeal exact line",
    "silent pages violated (dbtune / zeal)",
    "extras (dbtune / zeal)",
    "unused advice (proven / unproven)",
)


def row_cells(name: str, s: dict[str, int], tools: dict[str, str] | None = None) -> list[str]:
    def shown(tool: str, value: int, of_truth: bool = False) -> str:
        if tools is not None and tools.get(tool) != "ran":
            return {"skipped": "n/a", "not run": "n/a"}.get(tools.get(tool, ""), "failed")
        if tools is None and not s.get(f"{tool}_projects", 1):
            return "n/a"
        if of_truth and tools is None and s.get(f"{tool}_truth", s["truth"]) != s["truth"]:
            return f"{value} of {s[f'{tool}_truth']}"  # totals: the tool ran on fewer N+1s
        return str(value)

    def dbt(value: int, of_truth: bool = False) -> str:
        return shown("dbtune", value, of_truth)

    def zeal(value: int, of_truth: bool = False) -> str:
        return shown("zeal", value, of_truth)

    return [
        name,
        str(s["truth"]),
        dbt(s["dbtune_found"], True),
        dbt(s["dbtune_exact"], True),
        dbt(s["dbtune_proven"], True),
        zeal(s["zeal_found"], True),
        zeal(s["zeal_exact"], True),
        f"{dbt(s['dbtune_silent_violated'])} / {zeal(s['zeal_silent_violated'])}"
        f" of {s['silent_pages']}",
        f"{dbt(s['dbtune_extras'])} / {zeal(s['zeal_extras'])}",
        f"{dbt(s['unused_proven'])} / {dbt(s['unused_unproven'])}",
    ]


def table_rows(reports: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in reports:
        if r["state"] == "scored":
            rows.append(row_cells(r["project"], r["summary"], r["tools"]))
        else:
            rows.append([r["project"], r["message"]] + [""] * (len(HEADERS) - 2))
    if sum(r["state"] == "scored" for r in reports) > 1:
        rows.append(row_cells("total", totals(reports)))
    return rows


def text_table(rows: list[list[str]]) -> str:
    headers = [
        "project",
        "N+1s",
        "dbtune",
        "dbtune",
        "dbtune",
        "zeal",
        "zeal",
        "silent violated",
        "extras",
        "unused advice",
    ]
    second = [
        "",
        "in truth",
        "found",
        "exact line",
        "fix proven",
        "found",
        "exact line",
        "dbtune / zeal",
        "dbtune / zeal",
        "proven / unproven",
    ]
    wide = [r for r in rows if r[2] != "" or r[0] == "total"]
    widths = [
        max(len(headers[i]), len(second[i]), *(len(r[i]) for r in wide))
        for i in range(len(headers))
    ]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    out = [line(headers), line(second), "-" * len(line(headers))]
    for r in rows:
        if r[2] == "" and r[0] != "total" and r[1]:
            out.append(f"{r[0].ljust(widths[0])}  {r[1]}")
        else:
            if r[0] == "total":
                out.append("-" * len(line(headers)))
            out.append(line(r))
    return "\n".join(out)


def text_report(reports: list[dict[str, Any]]) -> str:
    out = [text_table(table_rows(reports))]
    for r in reports:
        if r["state"] != "scored":
            continue
        out.append("")
        versions = ", ".join(f"{k} {v}" for k, v in (r.get("versions") or {}).items() if v)
        out.append(f"== {r['project']}" + (f" ({versions})" if versions else ""))
        for problem in r["problems"]:
            out.append(f"  ! {problem}")
        for tool in TOOLS:
            if r["tools"][tool] != "ran":
                out.append(f"  {tool}: {r['tools'][tool]}")
                continue
            misses = r["misses"][tool]
            if not misses:
                out.append(f"  {tool} missed none of {r['summary']['truth']}")
                continue
            out.append(f"  {tool} missed {len(misses)} of {r['summary']['truth']}:")
            for m in misses:
                blind = "" if m["found_by"] == "hand" else f" (found_by {m['found_by']})"
                out.append(f"    {m['page']}  {m['relation']}{blind}")
        loose = [
            (tool, e)
            for e in r["entries"]
            for tool in TOOLS
            if set(e[tool].get("matched_as", [])) - {"same"}
        ]
        if loose:
            out.append("  found under another name (the other end of the key, or the model only):")
            for tool, e in loose:
                said = ", ".join(sorted({str(f["relation"]) for f in e[tool]["findings"]}))
                how = "/".join(e[tool]["matched_as"])
                out.append(f"    {tool}: {e['page']}  {e['relation']}: said {said} ({how})")
        inexact = [e for e in r["entries"] if e["dbtune"]["found"] and not e["dbtune"]["exact"]]
        if inexact:
            out.append("  dbtune found, not at the truth's lines:")
            for e in inexact:
                sites = "; ".join(
                    f"{f['call_site']} / {f['queryset_site']}" for f in e["dbtune"]["findings"]
                )
                out.append(
                    f"    {e['page']}  {e['relation']}: said {sites}; truth "
                    f"{e['trigger']} / {e['fix_site']}"
                )
        zeal_inexact = [e for e in r["entries"] if e["zeal"]["found"] and not e["zeal"]["exact"]]
        if zeal_inexact:
            out.append("  zeal found, not at the truth's trigger line:")
            for e in zeal_inexact:
                callers = "; ".join(
                    f["caller"] or "no project line" for f in e["zeal"]["findings"]
                )
                out.append(
                    f"    {e['page']}  {e['relation']}: said {callers}; truth {e['trigger']}"
                )
        together = [e for e in r["entries"] if e["dbtune"].get("proven_together")]
        if together:
            out.append("  dbtune fix proven with the other fixes of its function:")
            for e in together:
                proof = "; ".join(dict.fromkeys(proof_text(p) for p in e["dbtune"]["proofs"]))
                out.append(f"    {e['page']}  {e['relation']}: {proof} (truth after {e['after']})")
        unproven = [e for e in r["entries"] if e["dbtune"]["found"] and not e["dbtune"]["proven"]]
        if unproven:
            out.append("  dbtune found, fix not proven:")
            for e in unproven:
                proof = "; ".join(dict.fromkeys(proof_text(p) for p in e["dbtune"]["proofs"]))
                out.append(f"    {e['page']}  {e['relation']}: {proof} (truth after {e['after']})")
        for tool in TOOLS:
            items = r["silent_findings"][tool]
            if items:
                out.append(f"  {tool} on silent pages:")
                for i in items:
                    out.append(f"    {i['page']}  {i['relation']} x{i['count']}")
        for tool in TOOLS:
            items = r["extras"][tool]
            if items:
                out.append(f"  {tool} extras (not in the truth; for a human to judge):")
                for i in items:
                    where = i.get("call_site") or i.get("caller") or "no project line"
                    out.append(f"    {i['page']}  {i['relation']} x{i['count']} at {where}")
        for kind in ("proven", "unproven"):
            items = r["unused"][kind]
            if items:
                out.append(f"  dbtune unused eager loads, {kind}:")
                for i in items:
                    out.append(
                        f'    {i["page"]}  {i["kind"]} {i["model"]} "{i["path"]}" at '
                        f"{i['queryset_site']}"
                    )
    return "\n".join(out)


def proof_text(proof: dict[str, Any]) -> str:
    text = str(proof.get("verdict", "?"))
    if proof.get("after") is not None:
        text += f" {proof.get('before')}->{proof['after']}"
    if proof.get("together") is not None:
        text += f", {proof['together']} with the other fixes of its function"
    return text + (f" ({proof['reason']})" if proof.get("reason") else "")


def rst_report(reports: list[dict[str, Any]]) -> str:
    rows = []
    for row in table_rows(reports):
        rows.append(row if row[2] != "" or row[0] == "total" else [row[0], row[1]] + ["-"] * 8)
    out = [rst_list_table("N+1 detection on the corpus", list(HEADERS), rows), ""]
    detail = []
    for r in reports:
        if r["state"] != "scored":
            continue
        for e in r["entries"]:
            d, z = e["dbtune"], e["zeal"]
            dbt = (
                {"skipped": "n/a", "not run": "n/a"}.get(r["tools"]["dbtune"], "failed")
                if r["tools"]["dbtune"] != "ran"
                else "no"
                if not d["found"]
                else ", ".join(
                    ["found"]
                    + (["exact line"] if d["exact"] else [])
                    + (["fix proven"] if d["proven"] else [])
                )
            )
            zl = (
                {"skipped": "n/a", "not run": "n/a"}.get(r["tools"]["zeal"], "failed")
                if r["tools"]["zeal"] != "ran"
                else ("no" if not z["found"] else "found" + (", exact line" if z["exact"] else ""))
            )
            detail.append([r["project"], f"``{e['page']}``", f"``{e['relation']}``", dbt, zl])
    if detail:
        out.append(
            rst_list_table(
                "Each N+1 of the ground truth",
                ["project", "page", "relation", "django-dbtune", "django-zeal"],
                detail,
            )
        )
    return "\n".join(out)


def json_report(reports: list[dict[str, Any]]) -> str:
    return json.dumps({"projects": reports, "totals": totals(reports)}, indent=2)


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Score django-dbtune's and django-zeal's N+1 findings against the corpus "
        "ground truth (corpus/<project>/truth.toml)."
    )
    parser.add_argument("projects", nargs="*", help="Project directories (default: all).")
    parser.add_argument("--format", choices=("text", "json", "rst"), default="text")
    parser.add_argument(
        "--tools",
        default="dbtune,zeal",
        help="Which tools to run, comma-separated (default: dbtune,zeal).",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Score the raw outputs saved by the last run instead of running the tools.",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=None,
        help="The folder of project definitions (default: the one holding this script).",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="Seconds one tool run on one project may take (default 1800).",
    )
    args = parser.parse_args(argv)
    args.tools = tuple(t.strip() for t in args.tools.split(",") if t.strip())
    unknown = [t for t in args.tools if t not in TOOLS]
    if unknown or not args.tools:
        raise ScorerError(
            f"--tools: unknown tool(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(TOOLS)}"
        )
    return args


def main(argv: list[str]) -> int:
    global CORPUS
    try:
        args = parse_args(argv)
        if args.corpus is not None:
            if not args.corpus.is_dir():
                raise ScorerError(f"--corpus: {args.corpus} is not a folder")
            CORPUS = args.corpus.resolve()
        projects = chosen_projects(CORPUS, args.projects, "truth.toml")
        reports = []
        for name in projects:
            print(f"scoring {name} ...", file=sys.stderr, flush=True)
            reports.append(score_project(name, args))
    except ScorerError as error:
        print(f"score.py: {error}", file=sys.stderr)
        return 2
    formatter = {"text": text_report, "json": json_report, "rst": rst_report}[args.format]
    print(formatter(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
