"""The project's Python files read as Python reads them: in the encoding their PEP 263
cookie (``# -*- coding: latin-1 -*-``) or byte-order mark names, UTF-8 otherwise. Every
capability that reads or edits the project's code reads it here, and an edit is written
back in the encoding the file had."""

from __future__ import annotations

import tokenize
from pathlib import Path


def read_source(path: Path) -> str:
    """The text of a Python file. Raises ``OSError``, ``SyntaxError`` (an unknown
    encoding) or ``UnicodeDecodeError`` (bytes that are not in it)."""
    with tokenize.open(path) as file:
        return file.read()


def source_encoding(path: Path) -> str:
    """The encoding Python reads ``path`` in (``utf-8-sig`` when it starts with a BOM)."""
    with open(path, "rb") as file:
        return tokenize.detect_encoding(file.readline)[0]
