"""manage.py dbtune_report: one self-contained HTML page with every finding."""

import json
import re
from html.parser import HTMLParser
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.test_toolbar import valid_html

pytestmark = pytest.mark.django_db(transaction=True)

BENCHMARK = {
    "shapes": [
        {
            "shape": 'SELECT ... FROM "crawler_pageresult" WHERE status_code = %s',
            "index": "i",
            "before_ms": 58.68,
            "after_ms": 1.72,
        },
    ]
}


@pytest.fixture
def site():
    from dashboard import seed

    seed.seed(0.2, seed=7, using="default", progress=lambda n: None)


def report(tmp_path, *options, apps=("crawler",)):
    path = tmp_path / "report.html"
    call_command("dbtune_report", *apps, "--output", str(path), *options, stdout=StringIO())
    return path


def test_the_report_shows_indexes_n_plus_one_health_and_the_benchmark(site, tmp_path):
    benchmark = tmp_path / "bench.json"
    benchmark.write_text(json.dumps(BENCHMARK))
    html = report(tmp_path, "--url", "/crawler/pages/", "--benchmark", str(benchmark)).read_text()
    valid_html(html.replace("<!DOCTYPE html>", ""))
    assert "crawler.PageResult" in html and "Meta.indexes: models.Index(" in html
    assert "crawler/views.py:" in html  # the evidence: the line that asks for the index
    assert "N+1 on crawler.PageResult.crawl_job" in html
    assert "select_related(&quot;crawl_job__website&quot;)" in html
    assert "proven: re-run with the fix, " in html  # the page ran again with the fix
    assert "Index health" in html
    assert "58.68 ms" in html and "34.1\u00d7 faster" in html
    assert "<link" not in html and "<script" not in html  # self-contained


def test_n_plus_one_findings_can_come_from_a_recorded_run(site, tmp_path):
    out = StringIO()
    call_command("dbtune_nplusone", "/crawler/pages/", "--format", "json", stdout=out)
    recorded = tmp_path / "nplusone.json"
    recorded.write_text(out.getvalue())
    html = report(tmp_path, "--nplusone", str(recorded)).read_text()
    assert "proven: re-run with the fix, " in html
    assert f"recorded in {recorded}" in html
    # The same title as the page requested here has (it lost its count, and its words).
    requested = report(tmp_path, "--url", "/crawler/pages/").read_text()

    def titles(page):
        return [h.text for h in section(parse(page), "nplusone").find_all("h3")]

    assert titles(html) == titles(requested)
    assert titles(html)[0].startswith("N+1 on crawler.PageResult.crawl_job")
    assert titles(html)[0].endswith(" extra queries")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--nplusone", "missing.json"], "Cannot read missing.json"),
        (["--benchmark", "BAD"], "is not the JSON of bench/workload_indexes.py"),
        (["--url", "crawler/pages/"], "is not a path"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, options, message):
    (tmp_path / "BAD").write_text("{not json")
    options = [str(tmp_path / o) if o == "BAD" else o for o in options]
    with pytest.raises(CommandError, match=message):
        report(tmp_path, *options)
    assert list(tmp_path.iterdir()) == [tmp_path / "BAD"]


def test_a_missing_output_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("dbtune_report", "--output", str(tmp_path / "no" / "report.html"))


def test_a_page_that_did_not_answer_2xx_is_shown_with_its_status(tmp_path):
    with pytest.raises(CommandError) as caught:
        report(tmp_path, "--url", "/no/such/page/")
    assert "/no/such/page/: 404" in str(caught.value)
    html = (tmp_path / "report.html").read_text()  # written all the same
    assert "GET /no/such/page/ answered 404" in html
    assert "No N+1 queries" not in html
    # Its summary row is "not checked", never 0 findings: no page was looked at.
    [row] = [r for r in parse(html).find_all("tr") if "N+1 queries" in r.text]
    assert row.find(cls="not-checked").text == "not checked"


def test_a_login_protected_page_needs_the_user_or_its_status_allowed(tmp_path):
    from django.contrib.auth import get_user_model

    from publisher.models import Business, SocialAccount

    owner = get_user_model().objects.create(username="owner")
    for i in range(3):
        business = Business.objects.create(
            owner=owner, name=f"B{i}", slug=f"b{i}", created_at="2026-01-01T00:00Z"
        )
        SocialAccount.objects.create(
            business=business, platform="x", handle=f"b{i}", connected_at="2026-01-01T00:00Z"
        )
    html = report(tmp_path, "--url", "/my/businesses/", "--allow-status", "302").read_text()
    assert (
        "GET /my/businesses/ answered 302 to /accounts/login/?next=/my/businesses/: "
        "log in with --user" in html
    )
    assert "No N+1 queries" not in html
    html = report(tmp_path, "--url", "/my/businesses/", "--user", "owner").read_text()
    assert "N+1 on publisher.Business.social_accounts" in html
    assert "answered 302" not in html


def test_an_unknown_user_is_a_clear_error_and_writes_nothing(tmp_path):
    existing = tmp_path / "report.html"
    existing.write_text("an earlier report")
    with pytest.raises(CommandError, match="no user whose username is 'ghost'"):
        report(tmp_path, "--url", "/my/businesses/", "--user", "ghost")
    assert existing.read_text() == "an earlier report"
    assert list(tmp_path.iterdir()) == [existing]


def test_a_sort_by_an_annotation_in_the_code_never_stops_the_report(tmp_path, settings):
    settings.DBTUNE = {"PROJECT_ROOT": str(tmp_path)}
    (tmp_path / "views.py").write_text(
        "from django.db.models import Count\n"
        "from tests.testapp.models import Author, Shelf\n"
        'Author.objects.annotate(n=Count("books")).order_by("-n")\n'
        'Shelf.objects.filter(label="a").order_by("built", "-popularity")\n'
    )
    path = tmp_path / "report.html"
    call_command("dbtune_report", "testapp", "--output", str(path), stdout=StringIO())
    content = valid_html(path.read_text())
    assert "label, built" in content


# --- What a user sees on the page ----------------------------------------------------------


class Node:
    """An element of the report as parsed: its tag, attributes, children and text."""

    def __init__(self, tag, attrs, parent=None):
        self.tag, self.attrs, self.parent, self.children = tag, dict(attrs), parent, []

    @property
    def classes(self):
        return (self.attrs.get("class") or "").split()

    @property
    def text(self):
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def elements(self):
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.elements()

    def find_all(self, tag=None, cls=None, **attrs):
        return [
            node
            for node in self.elements()
            if (tag is None or node.tag == tag)
            and (cls is None or cls in node.classes)
            and all(node.attrs.get(k) == v for k, v in attrs.items())
        ]

    def find(self, tag=None, cls=None, **attrs):
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag or '*'} class={cls} {attrs}>"
        return found[0]


class _Tree(HTMLParser):
    VOID = {"br", "hr", "img", "input", "meta", "link", "rect", "line", "circle"}

    def __init__(self):
        super().__init__()
        self.root = self.node = Node("document", {})

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.node)
        self.node.children.append(node)
        if tag not in self.VOID:
            self.node = node

    def handle_startendtag(self, tag, attrs):
        self.node.children.append(Node(tag, attrs, self.node))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.node.tag == tag, f"</{tag}> closes <{self.node.tag}>"
        self.node = self.node.parent

    def handle_data(self, data):
        self.node.children.append(data)


def parse(html):
    tree = _Tree()
    tree.feed(html)
    tree.close()
    return tree.root


def section(doc, name):
    """The section a heading of the table of contents leads to."""
    node = doc.find(id=name)
    if node.tag == "section":
        return node
    # A bare heading: the section is what follows it, up to the next heading.
    siblings = node.parent.children
    part = Node("section", {"id": name}, node.parent)
    for child in siblings[siblings.index(node) + 1 :]:
        if isinstance(child, Node) and child.tag == "h2":
            break
        part.children.append(child)
    return part


def test_the_report_opens_with_counts_a_table_of_contents_and_each_page(site, tmp_path):
    doc = parse(report(tmp_path, "--url", "/crawler/pages/").read_text())
    summary = section(doc, "summary")
    headings = [h.parent.attrs.get("id") for h in doc.find_all("h2")]
    assert headings[0] == "summary"
    # Every link of the table of contents leads to a section of the page.
    links = [a.attrs["href"] for a in summary.find("nav").find_all("a")]
    assert {"#indexes", "#nplusone", "#health", "#pages"} <= set(links)
    assert all(doc.find_all(id=link.removeprefix("#")) for link in links)
    # The counts by section and severity are those of the findings shown below.
    rows = {
        tr.find_all("td")[0].text.strip(): [td.text.strip() for td in tr.find_all("td")[1:]]
        for tr in summary.find("table", cls="counts").find_all("tr")
        if tr.find_all("td")
    }
    for name, title in (("indexes", "Indexes"), ("health", "Index health")):
        shown = [b.text for b in section(doc, name).find_all("span", cls="sev")]
        high, medium, low, total = rows[title]
        assert (int(high), int(medium), int(low), int(total)) == (
            shown.count("high"),
            shown.count("medium"),
            shown.count("low"),
            len(shown),
        )
    assert int(rows["Indexes"][3]) > 0
    assert int(rows["N+1 queries"][3]) == len(section(doc, "nplusone").find_all(cls="finding"))
    # Each requested page with its status, query count and time.
    out = StringIO()
    call_command("dbtune_nplusone", "/crawler/pages/", "--format", "json", stdout=out)
    [counted] = json.loads(out.getvalue())
    [page] = [
        [td.text.strip() for td in tr.find_all("td")]
        for tr in summary.find("table", cls="pages").find_all("tr")
        if tr.find_all("td")
    ]
    assert page[:3] == ["/crawler/pages/", "200", str(counted["queries"])]
    assert page[3].endswith(" ms") and float(page[3].removesuffix(" ms")) > 0


SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


@pytest.mark.usefixtures("unindexed_foreign_keys")
def test_findings_read_most_severe_first_under_plain_titles(site, tmp_path):
    doc = parse(report(tmp_path, apps=("testapp", "crawler")).read_text())
    findings = section(doc, "indexes").find_all("div", cls="finding")
    severities = [f.find("span", cls="sev").text for f in findings]
    assert len(set(severities)) > 1
    assert severities == sorted(severities, key=SEVERITY_ORDER.get)
    # The heading's own words, before the model and fields it names.
    titles = [
        "".join(part for part in f.find("h3").children if isinstance(part, str)) for f in findings
    ]
    assert any("Foreign key without an index" in title for title in titles)
    internal = re.compile(r"\b[a-z]+_[a-z_]+\b")
    assert not [title for title in titles if internal.search(title)]


def test_a_redundant_index_is_shown_once(tmp_path):
    doc = parse(report(tmp_path, apps=("publisher",)).read_text())
    shown = [
        f for f in doc.find_all("div", cls="finding") if "publisher_account_platform_idx" in f.text
    ]
    assert len(shown) == 1
    assert "Index another index already serves" in shown[0].find("h3").text


def test_a_section_nothing_checked_says_so_and_is_not_styled_as_a_pass(tmp_path):
    doc = parse(report(tmp_path).read_text())
    nplusone = section(doc, "nplusone")
    [unchecked] = nplusone.find_all(cls="not-checked")
    assert unchecked.text.startswith("Not checked:")
    assert not nplusone.find_all(cls="pass")
    style = doc.find("style").text
    rule = re.search(r"\.not-checked \{([^}]*)\}", style).group(1)
    assert "#3a7" not in rule  # not the green of a pass

    recorded = tmp_path / "clean.json"
    recorded.write_text(json.dumps([{"url": "/clean/", "status": 200, "findings": []}]))
    nplusone = section(
        parse(report(tmp_path, "--nplusone", str(recorded)).read_text()), "nplusone"
    )
    [passed] = nplusone.find_all(cls="pass")
    assert "No N+1 queries or unused eager loads on /clean/" in passed.text
    assert not nplusone.find_all(cls="not-checked")


def overlaps(svg):
    """Pairs of a text and a bar that cover each other (text width estimated)."""
    bars = [
        tuple(float(r.attrs[k]) for k in ("x", "y", "width", "height"))
        for r in svg.find_all("rect")
        if "legend" not in r.classes
    ]
    found = []
    for text in svg.find_all("text"):
        size = float(text.attrs.get("font-size", 12))
        x, y = float(text.attrs["x"]), float(text.attrs["y"])
        width = len(text.text) * size * 0.6
        for bx, by, bw, bh in bars:
            if x < bx + bw and bx < x + width and y - size < by + bh and by < y:
                found.append((text.text, (bx, by, bw, bh)))
    return found


def test_the_benchmark_chart_names_each_index_keeps_labels_off_the_bars_and_has_a_legend(
    tmp_path,
):
    benchmark = tmp_path / "bench.json"
    shapes = [
        dict(BENCHMARK["shapes"][0], index="crawler_pag_status_5a1b2c_idx"),
        {
            "shape": 'SELECT ... FROM "marketplace_payment" WHERE "status" = %s ORDER BY id',
            "index": "marketplace_status_9f8e7d_idx",
            "before_ms": 12.5,
            "after_ms": 0.4,
        },
    ]
    benchmark.write_text(json.dumps({"shapes": shapes}))
    doc = parse(report(tmp_path, "--benchmark", str(benchmark)).read_text())
    svg = section(doc, "benchmark").find("svg")
    assert overlaps(svg) == []
    texts = [t.text for t in svg.find_all("text")]
    assert "before" in texts and "after" in texts  # the legend
    assert any("crawler_pag_status_5a1b2c_idx" in t for t in texts)
    assert any("marketplace_status_9f8e7d_idx" in t for t in texts)
    assert "viewbox" in svg.attrs  # scales down to a narrow window (names come lowered)


def test_each_requested_page_charts_its_queries_before_and_with_the_proven_fixes(site, tmp_path):
    html = report(tmp_path, "--url", "/crawler/pages/").read_text()
    doc = parse(html)
    [chart] = section(doc, "pages").find_all("svg")
    assert "/crawler/pages/" in chart.attrs["aria-label"]
    proofs = [
        re.search(r"proven: re-run with the fix, (\d+) -> (\d+) queries", f.text)
        for f in section(doc, "nplusone").find_all(cls="finding")
    ]
    saved = sum(int(p[1]) - int(p[2]) for p in proofs if p)
    assert saved > 0
    before = int(section(doc, "summary").find("table", cls="pages").find_all("td")[2].text)
    texts = [t.text for t in chart.find_all("text")]
    assert f"{before} queries" in texts
    assert f"{before - saved} queries" in texts
    assert any(t.endswith(" ms") for t in texts)  # the page's time, as measured
    assert overlaps(chart) == []
    assert "<script" not in html
