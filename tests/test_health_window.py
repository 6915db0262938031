"""index_health never contradicts suggest_indexes: it says how long its statistics cover,
advises no removal on statistics under UNUSED_INDEX_MIN_DAYS, and never advises dropping an
index that backs a foreign key or a constraint, that the code's queries use, or that is
younger than the window."""

import json
from datetime import timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection

from django_dbtune.advisor import health as health_module
from django_dbtune.advisor.unused_indexes import StatsWindow
from tests.conftest import POSTGRES
from tests.test_writer import manage


def _health(*options):
    out = StringIO()
    call_command("index_health", *options, stdout=out)
    return out.getvalue()


def _unused(report):
    return {f["message"].split(" ")[1] for f in report["findings"] if f["kind"] == "unused_index"}


def test_fresh_statistics_say_how_long_they_cover_and_advise_no_removal(postgres_only, db):
    text = _health()
    assert "The statistics cover " in text
    assert "No index is advised for removal" in text
    report = json.loads(_health("--format", "json"))
    assert _unused(report) == set()
    assert report["unused_index_min_days"] == 7
    assert report["stats_days"] is None or report["stats_days"] < 1
    assert report["stats_window"].startswith("statistics cover ")


@pytest.fixture
def month_old_statistics(postgres_only, db):
    """Statistics that cover 30 days; every app migrated 60 days ago except publisher (today);
    testapp has no migrations (its tables are made without them)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE django_migrations SET applied = now() - interval '60 days' "
            "WHERE app <> 'publisher'"
        )
        cursor.execute("CREATE INDEX shop_book_summary_by_hand ON shop_book (summary)")
        cursor.execute("SELECT now()")
        now = cursor.fetchone()[0]
    window = StatsWindow(now, now - timedelta(days=30), "reset")
    with mock.patch.object(health_module, "stats_window", return_value=window):
        yield


def test_on_old_statistics_only_what_nothing_needs_is_advised_for_removal(month_old_statistics):
    report = json.loads(_health("--format", "json"))
    kept = {index["name"]: index["kept"] for index in report["indexes"] if index["kept"]}
    unused = _unused(report)
    # Nothing uses them, nothing needs them, and they are old: advised.
    # (by hand, or by an app without migrations: as old as the statistics say)
    assert {"shop_book_summary_by_hand", "shelf_code_a"} <= unused
    assert "in the 30.0 days (since" in next(
        f["message"]
        for f in report["findings"]
        if f["kind"] == "unused_index" and "shop_book_summary_by_hand" in f["message"]
    )
    # Django's own foreign-key index, and a composite that is the only one leading with one.
    fk_index = next(name for name in kept if name.startswith("shop_book_author_id_"))
    assert "index of the foreign key author" in kept[fk_index]
    assert "foreign key editor" in kept["book_editor_title"]
    # Django's own pattern index of a unique text field, and one the code filters by.
    assert "pattern index" in kept[next(n for n in kept if n.startswith("crawler_website_domain"))]
    assert "the code filters or sorts by room at" in kept["shelf_room"]
    # One a migration applied today created: younger than the window.
    young = kept["publisher_account_platform_idx"]
    assert "under UNUSED_INDEX_MIN_DAYS = 7 days ago" in young
    assert "(migration publisher.0001_initial)" in young
    assert not set(kept) & unused
    assert all(not name.startswith("shop_book_author_id_") for name in unused)
    text = _health()
    assert "Unused, but not advised for removal:" in text


def test_a_shorter_window_setting_lets_older_indexes_be_advised(month_old_statistics, settings):
    settings.DBTUNE = {"UNUSED_INDEX_MIN_DAYS": 0}
    report = json.loads(_health("--format", "json"))
    assert "publisher_account_platform_idx" in _unused(report)
    settings.DBTUNE = {"UNUSED_INDEX_MIN_DAYS": 45}
    report = json.loads(_health("--format", "json"))
    assert _unused(report) == set()
    assert "removal is advised only on statistics of at least UNUSED_INDEX_MIN_DAYS = 45" in (
        next(i["kept"] for i in report["indexes"] if i["name"] == "shop_book_summary_by_hand")
    )


# --- the sequence, as a user runs it ---------------------------------------------------


def test_write_migrate_then_health_advises_dropping_nothing_suggest_indexes_wants(project):
    if not POSTGRES:
        pytest.skip("needs PostgreSQL (index statistics): run with DBTUNE_DB=postgres")
    manage(project, "migrate", "-v0")
    manage(project, "suggest_indexes", "--write")
    manage(project, "migrate", "-v0")
    text = manage(project, "index_health").stdout
    assert "The statistics cover " in text
    assert _unused(json.loads(manage(project, "index_health", "--format", "json").stdout)) == set()
    # Even with no minimum window, nothing suggest_indexes asks for is advised for removal.
    settings_file = project / "config" / "settings.py"
    settings_file.write_text(
        settings_file.read_text()
        + '\nDBTUNE = {**globals().get("DBTUNE", {}), "UNUSED_INDEX_MIN_DAYS": 0}\n'
    )
    report = json.loads(manage(project, "index_health", "--format", "json").stdout)
    advised = _unused(report)
    written = {
        line.split(", name='")[1].split("'")[0]
        for path in project.glob("*/migrations/0002_dbtune_indexes.py")
        for line in path.read_text().splitlines()
        if "models.Index(" in line
    }
    assert written and not (written & advised)
    assert not any("_id_" in name for name in advised)  # Django's foreign-key indexes
    suggested = json.loads(manage(project, "suggest_indexes", "--format", "json").stdout)
    assert not [f for f in suggested if f["kind"] == "missing_fk_index"]


def test_a_search_index_the_code_uses_is_never_called_unused(db):
    """A containment search wants its GIN index (suggest_indexes asks for it), which a
    B-tree on the column does not serve; an expression index's columns cannot be read, so
    neither can whether it is used."""
    from django_dbtune.advisor.code_scan import Usage
    from django_dbtune.advisor.index_stats import IndexStats
    from django_dbtune.advisor.unused_indexes import serving_use
    from django_dbtune.schema import model_schemas
    from tests.testapp.models import Listing

    [schema] = [s for s in model_schemas(["testapp"], "default") if s.model is Listing]
    usage = Usage(Listing, "views.py", 3, 'Listing.objects.filter(attributes__contains={"a": 1})')
    usage.contains.append(("attributes", False))

    def index(name, columns, method):
        return IndexStats(
            name, "t", "testapp.Listing", 0, 0, False, False, True, columns, method=method
        )

    gin = index("listing_attrs_gin", ("attributes",), "gin")
    assert serving_use(schema, gin, [usage]) == (
        "the code filters or sorts by attributes at views.py:3"
    )
    assert (
        serving_use(schema, index("listing_attrs_btree", ("attributes",), "btree"), [usage])
        is None
    )
    assert "expression index" in serving_use(schema, index("listing_upper_trgm", (), "gin"), [])


def test_a_period_under_an_hour_is_said_in_minutes():
    """A fresh server printed "statistics cover 0.0 hours"."""
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    started = StatsWindow(now, now - timedelta(minutes=3), "started").describe()
    assert started.startswith("statistics cover 3 minutes (since")
    assert "cover 1 minute (" in StatsWindow(now, now - timedelta(seconds=70), "reset").describe()
    assert "cover 2.0 hours" in StatsWindow(now, now - timedelta(hours=2), "reset").describe()
