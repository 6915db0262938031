"""docs/tutorial.rst, run as a new user would: each file it shows is written, each command it
shows is run in a fresh ``startproject`` site, and each line of output it shows must be in
what the command printed."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    # It runs its own site on SQLite: CI's PostgreSQL run would only repeat it.
    pytest.mark.skipif(
        os.environ.get("DBTUNE_DB") == "postgres",
        reason="needs the SQLite run: run with DBTUNE_DB=sqlite (the site is on SQLite)",
    ),
]

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.rst"
BLOCK = re.compile(r"^\.\. code-block:: (\S+)\n((?:   :\w+:.*\n)*)\n((?:(?:   .*)?\n)+)", re.M)


def blocks():
    """(language, caption, text) of each code block, in order."""
    for match in BLOCK.finditer(TUTORIAL.read_text()):
        language, options, body = match.groups()
        caption = re.search(r":caption: (.*)", options)
        text = "\n".join(line[3:] for line in body.splitlines()).strip("\n") + "\n"
        yield language, caption.group(1) if caption else None, text


def steps():
    """What the tutorial asks for: ("file", path, text, append), ("run", command, expected
    lines) and ("console", None, expected lines) for the runserver console it shows."""
    for language, caption, text in blocks():
        if language == "console":
            command, expected = None, []
            for line in text.splitlines():
                if line.startswith("$ "):
                    if command is not None:
                        yield ("run", command, expected)
                    command, expected = line[2:], []
                elif line.strip():
                    expected.append(line.strip())
            if command is not None:
                yield ("run", command, expected)
        elif caption == "the runserver console":
            yield ("console", None, [line.strip() for line in text.splitlines() if line.strip()])
        elif caption is not None:
            append = caption.startswith("add at the end of ")
            yield ("file", caption.removeprefix("add at the end of "), text, append)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runserver(site, env):
    """The development server's console while /books/ is requested once."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", str(port), "--noreload"],
        cwd=site,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/books/") as response:
                    assert response.status == 200
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(0.5)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    return output


def test_the_tutorial_runs_as_written(tmp_path):
    bin_folder = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_folder}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    here = tmp_path
    console = ""
    ran = []
    for step in steps():
        if step[0] == "file":
            _, path, text, append = step
            target = here / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "a" if append else "w") as file:
                file.write(("\n" if append else "") + text)
        elif step[0] == "console":
            printed = {line.strip() for line in console.splitlines()}
            missing = [line for line in step[2] if line not in printed]
            assert not missing, f"runserver's console lacks {missing}:\n{console}"
        else:
            _, command, expected = step
            ran.append(command)
            if command.startswith("python -m pip install"):
                continue  # this environment has django-dbtune installed already
            if command.startswith("cd "):
                here = here / command[3:]
                continue
            if command == "python manage.py runserver":
                console = runserver(here, env)
                continue
            done = subprocess.run(
                command, shell=True, cwd=here, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            printed = {line.strip() for line in done.stdout.splitlines()}
            missing = [line for line in expected if line not in printed]
            assert not missing, f"{command} did not print {missing}:\n{done.stdout}"
    # Everything it promises ran: the N+1 found and fixed, the index written and migrated.
    assert "python manage.py dbtune_nplusone /books/ --write" in ran
    assert "python manage.py suggest_indexes --write" in ran
    assert 'select_related("author")' in (here / "library" / "views.py").read_text()
    assert "library_boo_publish" in (here / "library" / "models.py").read_text()
