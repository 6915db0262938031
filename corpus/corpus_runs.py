"""What both corpus scorers (``score.py`` for N+1s, ``index_score.py`` for indexes) share:
where a project's work lives, running a command in it, reading the JSON it printed, and
writing reStructuredText tables. Standard library only, Python 3.11+."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def work_root() -> Path:
    """Where checkouts, venvs and saved outputs go: ``DBTUNE_CORPUS_WORK`` or
    ``corpus/.work``."""
    return Path(os.environ.get("DBTUNE_CORPUS_WORK") or HERE / ".work")


def work_dir(project: str) -> Path:
    return work_root() / project


class ScorerError(Exception):
    """The scorer itself cannot go on (exit status 2)."""


def chosen_projects(corpus: Path, names: list[str], truth_file: str) -> list[str]:
    """The projects named, or every project of ``corpus`` that has a ``truth_file``."""
    projects = names or sorted(
        d.name
        for d in corpus.iterdir()
        if d.is_dir() and not d.name.startswith((".", "_")) and (d / truth_file).exists()
    )
    for name in projects:
        if "/" in name or not (corpus / name).is_dir():
            raise ScorerError(f"no project {name!r} in corpus/ (a directory with {truth_file})")
    if not projects:
        raise ScorerError(f"no project in corpus/ has a {truth_file} yet")
    return projects


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(status, stdout, stderr) of ``cmd``; status -1 when it ran out of time."""
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else expired.stdout
        err = expired.stderr.decode() if isinstance(expired.stderr, bytes) else expired.stderr
        return (-1, out or "", f"{err or ''}\ntimed out after {timeout:.0f} s".lstrip())
    return done.returncode, done.stdout, done.stderr


def parse_json_out(text: str) -> Any:
    """The JSON a command printed, after anything the project printed before it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("[") or line.startswith("{"):
            try:
                return json.loads("\n".join(lines[index:]))
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON in the output")


def tail(text: str, lines: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def rst_list_table(title: str, headers: list[str], rows: list[list[str]]) -> str:
    out = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for cells in [headers, *rows]:
        out.append(f"   * - {cells[0] or ' '}")
        out.extend(f"     - {c or ' '}" for c in cells[1:])
    return "\n".join(out)
