"""Edits written into the project's files keep what the file had: its encoding and its line
endings (an editor on Windows saves CRLF; a whole file of changed endings is a diff nobody
can review)."""

from django_dbtune.edits import write_all


def test_a_crlf_file_stays_crlf_and_a_new_file_is_lf(tmp_path):
    models = tmp_path / "models.py"
    models.write_bytes(b"from django.db import models\r\n\r\n\r\nclass A(models.Model):\r\n")
    edited = "from django.db import models\n\n\nclass A(models.Model):\n    x = 1\n"
    migration = tmp_path / "0002.py"
    write_all({models: edited, migration: "a = 1\n"})
    assert models.read_bytes() == edited.replace("\n", "\r\n").encode()
    assert migration.read_bytes() == b"a = 1\n"


def test_a_latin_1_file_stays_latin_1(tmp_path):
    models = tmp_path / "models.py"
    models.write_bytes(b'# -*- coding: latin-1 -*-\nNAME = "caf\xe9"\n')
    write_all({models: '# -*- coding: latin-1 -*-\nNAME = "caf\xe9"\nX = 1\n'})
    assert models.read_bytes() == b'# -*- coding: latin-1 -*-\nNAME = "caf\xe9"\nX = 1\n'
