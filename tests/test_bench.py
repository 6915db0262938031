"""The benchmarks in bench/ run to their end, and what they write is what the docs say reads it."""

import importlib.util
import json
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command

from tests.conftest import POSTGRES, ROOT

WORKLOAD_INDEXES = ROOT / "bench" / "workload_indexes.py"


def workload_indexes():
    spec = importlib.util.spec_from_file_location("workload_indexes", WORKLOAD_INDEXES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shape(median, plan, tables):
    return {"median": median, "plan": plan, "tables": tables, "calls": 1}


@pytest.mark.django_db
def test_workload_indexes_prints_its_table_and_its_json_feeds_the_report(tmp_path, capsys):
    """The end of a run: two read shapes got faster with the index written for them."""
    slow = 'SELECT * FROM "crawler_pageresult" WHERE "status_code" = %s'
    other = 'SELECT * FROM "crawler_website" WHERE "domain" = %s'
    findings = [{"index": {"name": "crawler_pag_status_1a2b3c_idx"}}]
    before = {
        "shapes": {
            slow: shape(0.05, "Seq Scan", ["crawler_pageresult"]),
            other: shape(0.001, "Seq Scan", ["crawler_website"]),
        },
        "indexes": {},
    }
    after = {
        "shapes": {
            slow: shape(0.001, '"crawler_pag_status_1a2b3c_idx"', ["crawler_pageresult"]),
            other: shape(0.001, "Seq Scan", ["crawler_website"]),
        },
        "indexes": {"crawler_pag_status_1a2b3c_idx": "crawler_pageresult"},
    }
    rows = workload_indexes()._print(findings, before, after)
    printed = capsys.readouterr().out
    assert "1 index(es) suggested and written: crawler_pag_status_1a2b3c_idx" in printed
    assert "speed-up median 50.0x" in printed
    assert rows == [
        {
            "shape": slow,
            "index": "crawler_pag_status_1a2b3c_idx",
            "before_ms": 50.0,
            "after_ms": 1.0,
        }
    ]
    figures = tmp_path / "bench.json"
    figures.write_text(json.dumps({"shapes": rows}))
    output = report_with(figures, tmp_path)
    assert "crawler_pag_status_1a2b3c_idx" in output.read_text()


@pytest.mark.slow
@pytest.mark.skipif(
    not POSTGRES, reason="needs PostgreSQL with HypoPG: run with DBTUNE_DB=postgres"
)
@pytest.mark.django_db
def test_workload_indexes_runs_at_a_small_scale(tmp_path):
    figures = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable,
            str(WORKLOAD_INDEXES),
            "--scale",
            "0.2",
            "--runs",
            "1",
            "--json",
            str(figures),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    assert "index(es) suggested and written" in run.stdout
    output = report_with(figures, tmp_path)
    assert "Query time per shape, before and after" in output.read_text()


@pytest.mark.slow
@pytest.mark.skipif(not POSTGRES, reason="needs PostgreSQL: run with DBTUNE_DB=postgres")
@pytest.mark.parametrize("store", ["database", "cache"])
def test_production_load_finds_every_n_plus_one_page_across_workers(store):
    """gunicorn's workers each sample every request; the store they share (the table, or a
    Redis restarted half-way through) holds each N+1 page of the example project, with the
    fix manage.py dbtune_nplusone gives."""
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "production_load.py"),
            "--workers",
            "2",
            "--clients",
            "2",
            "--requests",
            "40",
            "--rounds",
            "1",
            "--store",
            store,
            "--paired",
            "10",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("same fix as dbtune_nplusone") == 5, run.stdout
    assert "SAMPLE_RATE 1.0" in run.stdout
    assert "Paired: 10 pairs of requests" in run.stdout and "95% interval" in run.stdout
    if store == "cache":
        assert "Redis restarted 1 time(s) mid-block" in run.stdout


@pytest.mark.slow
@pytest.mark.skipif(not POSTGRES, reason="needs PostgreSQL: run with DBTUNE_DB=postgres")
def test_production_overhead_compares_the_default_rate_with_off_in_one_process():
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "production_overhead.py"), "--rounds", "4"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SAMPLE_RATE 0.01: " in run.stdout and "95% interval" in run.stdout


def report_with(figures, folder):
    """``dbtune_report --benchmark`` on a benchmark's JSON: the report it wrote."""
    output = folder / "report.html"
    call_command(
        "dbtune_report",
        "crawler",
        "--output",
        str(output),
        "--benchmark",
        str(figures),
        stdout=StringIO(),
    )
    return output
