"""Writing source files all together or not at all: a ``--write`` never leaves a project
half-edited. Every capability that edits the project's files writes through here."""

from __future__ import annotations

import os
from pathlib import Path

from django_dbtune.errors import WriteError


def write_all(files: dict[Path, str]) -> list[Path]:
    """Write each file's new content, or none of them: every file is checked writable
    first, and the ones written are put back if a later one fails."""
    for path in files:
        target = path if path.exists() else path.parent
        if not os.access(target, os.W_OK):
            raise WriteError(f"{path} is not writable; nothing was written.")
    originals = {
        path: path.read_text(encoding="utf-8") if path.exists() else None for path in files
    }
    done: list[Path] = []
    try:
        for path, content in files.items():
            path.write_text(content, encoding="utf-8")
            done.append(path)
    except OSError as exc:
        for path in done:
            original = originals[path]
            if original is None:
                path.unlink()
            else:
                path.write_text(original, encoding="utf-8")
        raise WriteError(f"Could not write {path}: {exc}; nothing was changed.") from exc
    return done
