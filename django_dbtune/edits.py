"""Writing source files all together or not at all: a ``--write`` never leaves a project
half-edited. Every capability that edits the project's files writes through here."""

from __future__ import annotations

import os
from pathlib import Path

from django_dbtune.errors import WriteError
from django_dbtune.source_files import source_encoding


def write_all(files: dict[Path, str]) -> list[Path]:
    """Write each file's new content, or none of them: every file is checked writable
    first, and the ones written are put back if a later one fails. A file is written in
    the encoding it has (its coding cookie) and with the line endings it has (CRLF stays
    CRLF), a new one in UTF-8."""
    for path in files:
        target = path if path.exists() else path.parent
        if not os.access(target, os.W_OK):
            raise WriteError(f"{path} is not writable; nothing was written.")
    originals = {path: path.read_bytes() if path.exists() else None for path in files}
    encodings = {
        path: "utf-8" if original is None else source_encoding(path)
        for path, original in originals.items()
    }
    for path, content in files.items():
        try:
            content.encode(encodings[path])
        except UnicodeEncodeError as exc:
            raise WriteError(
                f"The edit of {path} has text its encoding ({encodings[path]}) cannot hold "
                f"({exc.object[exc.start : exc.end]!r}); nothing was written."
            ) from None
    done: list[Path] = []
    try:
        for path, content in files.items():
            original = originals[path]
            if original is not None and b"\r\n" in original:  # read with universal newlines
                content = content.replace("\r\n", "\n").replace("\n", "\r\n")
            path.write_bytes(content.encode(encodings[path]))
            done.append(path)
    except OSError as exc:
        for path in done:
            original = originals[path]
            if original is None:
                path.unlink()
            else:
                path.write_bytes(original)
        raise WriteError(f"Could not write {path}: {exc}; nothing was changed.") from exc
    return done
