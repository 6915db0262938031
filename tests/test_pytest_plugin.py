"""The pytest plugin (django_dbtune.pytest_plugin), run on a small test module in a separate
pytest process."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each test runs pytest in a subprocess.
pytestmark = pytest.mark.slow

TESTS = """
import pytest
from tests.shop.models import Author, Book


@pytest.fixture
def books(db):
    author = Author.objects.create(name="a")
    for i in range(3):
        Book.objects.create(title=str(i), author=author)


def test_n_plus_one(books):
    for book in Book.objects.all():
        book.author.name


@pytest.mark.dbtune_allow_nplusone
def test_allowed(books):
    for book in Book.objects.all():
        book.author.name


def test_clean(books):
    for book in Book.objects.select_related("author"):
        book.author.name


@pytest.mark.dbtune_nplusone
def test_marked(books):
    for book in Book.objects.all():
        book.author.name


def test_fixture(books, dbtune_nplusone):
    for book in Book.objects.all():
        book.author.name
    assert [f.relation for f in dbtune_nplusone.findings] == ["shop.Book.author"]
"""


def run_pytest(tmp_path, *args, tests=TESTS):
    test_file = tmp_path / "test_sample.py"
    test_file.write_text(textwrap.dedent(tests))
    # The inner run uses in-memory SQLite: on PostgreSQL it would create and drop the very
    # test database this run is using.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "DBTUNE_DB": "sqlite"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(test_file),
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            "-W",
            "default",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def test_installing_the_package_registers_the_plugin_and_p_no_turns_it_off(tmp_path):
    from importlib.metadata import entry_points

    (plugin,) = entry_points(group="pytest11", name="django_dbtune")
    assert plugin.value == "django_dbtune.pytest_plugin"
    status, output = run_pytest(tmp_path, "-p", "no:django_dbtune", "--dbtune-nplusone=raise")
    assert status == 4
    assert "unrecognized arguments: --dbtune-nplusone=raise" in output


def test_off_by_default_except_the_marker_and_the_fixture(tmp_path):
    status, output = run_pytest(tmp_path)
    assert status == 1, output
    assert "1 failed, 4 passed" in output
    assert "test_marked" in output and "NPlusOneError" in output


def test_raise_fails_each_test_with_a_finding(tmp_path):
    status, output = run_pytest(tmp_path, "--dbtune-nplusone=raise")
    assert status == 1
    assert "2 failed, 3 passed" in output, output
    assert "FAILED" in output and "test_n_plus_one" in output
    assert 'fix: .select_related("author")' in output
    # Each test ran again, as it is and with the fix, in a transaction rolled back.
    assert "proven: re-run with the fix, 4 -> 1 queries" in output


def test_no_proof_reports_without_running_tests_again(tmp_path):
    status, output = run_pytest(tmp_path, "--dbtune-nplusone=raise", "--dbtune-no-proof")
    assert status == 1
    # Nothing ran the test again with the fix: it is not stated as one.
    assert 'suggestion (not tried yet): .select_related("author")' in output
    assert (
        "nothing ran the code again with it: the pytest plugin (without --dbtune-no-proof) "
        "proves it" in output
    )
    assert "1 N+1 query:" in output  # what it found, by kind (not "finding(s)")
    assert "fix:" not in output and "proven:" not in output


def test_warn_reports_warnings(tmp_path):
    status, output = run_pytest(tmp_path, "--dbtune-nplusone=warn", "-k", "not marked")
    assert status == 0, output
    assert "NPlusOneWarning" in output and "N+1 on shop.Book.author" in output
    # Shown at the test's line, not at a line of the plugin.
    [shown] = [line for line in output.splitlines() if ": NPlusOneWarning:" in line]
    assert "test_sample.py:" in shown and "pytest_plugin" not in shown


def test_baseline_then_only_new_findings(tmp_path):
    baseline = tmp_path / "baseline.json"
    status, output = run_pytest(
        tmp_path,
        "--dbtune-nplusone=raise",
        "--dbtune-nplusone-update-baseline",
        f"--dbtune-nplusone-baseline={baseline}",
    )
    assert status == 0, output
    assert f"wrote 2 known N+1 finding(s) to {baseline} (2 entries: one per relation)" in output
    assert len(json.loads(baseline.read_text())["findings"]) == 2
    status, output = run_pytest(
        tmp_path, "--dbtune-nplusone=raise", f"--dbtune-nplusone-baseline={baseline}"
    )
    assert status == 0, output


def test_a_baseline_with_no_place_is_refused_before_the_run(tmp_path):
    """It ran every test, then ended in a traceback (a missing folder) or an error (no
    file named) after the whole suite."""
    missing = tmp_path / "nodir" / "baseline.json"
    update = ["--dbtune-nplusone=warn", "--dbtune-nplusone-update-baseline"]
    status, output = run_pytest(tmp_path, *update, f"--dbtune-nplusone-baseline={missing}")
    assert status == 4, output
    assert f"the folder {missing.parent} does not exist" in output
    assert "Traceback" not in output and "passed" not in output
    status, output = run_pytest(tmp_path, *update)
    assert status == 4, output
    assert "needs a file" in output and "passed" not in output


MARKED = """
import pytest
from tests.shop.models import Author, Book


@pytest.mark.dbtune_nplusone("warn")
def test_positional(db):
    list(Book.objects.all())


@pytest.mark.dbtune_nplusone(bogus=1)
def test_unknown(db):
    list(Book.objects.all())


@pytest.mark.dbtune_nplusone(raise_="no")
def test_not_a_bool(db):
    list(Book.objects.all())
"""


def test_a_marker_used_wrongly_fails_its_test_saying_what_it_takes(tmp_path):
    """A positional argument was ignored, an unknown one raised a TypeError from inside the
    plugin, and raise_="no" counted as true."""
    status, output = run_pytest(tmp_path, tests=MARKED)
    assert status == 1 and "3 failed" in output, output
    assert "takes keyword arguments only" in output and "got 'warn'" in output
    assert "dbtune_nplusone(bogus=1): it takes raise_= (True or False)" in output
    assert "dbtune_nplusone(raise_='no')" in output
    assert "TypeError" not in output


def test_update_baseline_needs_a_mode(tmp_path):
    status, output = run_pytest(tmp_path, "--dbtune-nplusone-update-baseline")
    assert status != 0
    assert "needs --dbtune-nplusone=warn" in output


@pytest.mark.parametrize("mode", ["loud"])
def test_unknown_mode_is_refused(tmp_path, mode):
    status, output = run_pytest(tmp_path, f"--dbtune-nplusone={mode}")
    assert status == 4
    assert "invalid choice" in output


def test_record_writes_the_workload_of_the_run(tmp_path):
    from django_dbtune import workload

    path = tmp_path / "workload.jsonl"
    status, output = run_pytest(tmp_path, f"--dbtune-record={path}", "-k", "clean or allowed")
    assert status == 0, output
    shapes = workload.read(path)
    assert f"recorded {len(shapes)} query shape(s) in {path}" in output
    # The tests' own queries, not their fixtures' inserts.
    assert {shape.kind for shape in shapes} == {"read"}
    assert sum(shape.calls for shape in shapes) == 1 + 1 + 3  # two lists, three lazy loads
    sites = {site for shape in shapes for site in shape.call_sites}
    assert sites and all("test_sample.py:" in site for site in sites)
