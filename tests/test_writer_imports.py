"""--write writes indexes under the names each models module imports, adds the import it
lacks, and refuses (nothing written) where an added import could change the module."""

import re

import pytest

from django_dbtune.advisor.module_names import module_names, with_import
from django_dbtune.errors import WriteError
from tests.test_writer import manage


def spelled(source, needs_q=True):
    names = module_names(source, "app/models.py", needs_q=needs_q)
    return names.index, names.q, names.missing_import


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from django.db import models\n", ("models.Index", "models.Q", None)),
        ("from django.db import models as m\n", ("m.Index", "m.Q", None)),
        ("import django.db.models as dj\n", ("dj.Index", "dj.Q", None)),
        ("import django.db.models\n", ("django.db.models.Index", "django.db.models.Q", None)),
        ("from django.db.models import Index, Model, Q\n", ("Index", "Q", None)),
        ("from django.db.models import Index as Idx, Q\n", ("Idx", "Q", None)),
        ("from django.db.models import *\n", ("Index", "Q", None)),
        (
            "from django.db.models import Model\n",
            ("models.Index", "models.Q", "from django.db import models"),
        ),
        (
            "from django.db.models import Index, Model\n",
            ("Index", "models.Q", "from django.db import models"),
        ),
        (
            "from . import models\nfrom django.db.models import Model\n",
            ("Index", "Q", "from django.db.models import Index, Q"),
        ),
        # The last binding wins, as when Python runs the file.
        (
            "from django.db import models\nmodels = None\n",
            ("Index", "Q", "from django.db.models import Index, Q"),
        ),
    ],
)
def test_each_way_a_models_module_reaches_index(source, expected):
    assert spelled(source) == expected


def test_an_index_that_places_nulls_gets_f_under_the_modules_own_name():
    def with_f(source):
        names = module_names(source, "app/models.py", needs_q=False, needs_f=True)
        return names.index, names.f, names.missing_import

    assert with_f("from django.db import models as m\n") == ("m.Index", "m.F", None)
    assert with_f("from django.db.models import F, Index\n") == ("Index", "F", None)
    assert with_f("from django.db.models import Index, Model\n") == (
        "Index",
        "models.F",
        "from django.db import models",
    )
    assert with_f("from . import models\nfrom django.db.models import Index\n") == (
        "Index",
        "F",
        "from django.db.models import F",
    )


def test_what_would_not_import_is_refused():
    with pytest.raises(WriteError, match=r"names from '\.base'"):
        spelled("from .base import *\n")
    with pytest.raises(WriteError, match="'models' and 'Index' for something other"):
        spelled("from . import models\nIndex = 1\n")


def test_the_import_goes_after_the_last_import():
    source = (
        '"""Doc."""\n\nfrom django.db.models import (\n    Model,\n)\n\n\n'
        "class A(Model):\n    pass\n"
    )
    assert with_import(source, "from django.db import models") == source.replace(
        ")\n\n\nclass", ")\nfrom django.db import models\n\n\nclass"
    )
    assert with_import("X = 1\n", "import os") == "import os\nX = 1\n"


# --- as a user runs it: write, then every manage.py command still works ---------------------


def _from_imports(text):
    """The module with ``from django.db.models import ...`` instead of ``models.``."""
    used = sorted(set(re.findall(r"\bmodels\.(\w+)", text)) - {"Index", "Q"})
    text = re.sub(r"\bmodels\.(\w+)", r"\1", text)
    return text.replace(
        "from django.db import models\n", f"from django.db.models import {', '.join(used)}\n"
    )


def test_write_uses_the_modules_own_names_and_the_project_still_runs(project):
    publisher = project / "publisher" / "models.py"
    publisher.write_text(
        re.sub(r"\bmodels\.", "m.", publisher.read_text()).replace(
            "from django.db import models\n", "from django.db import models as m\n"
        )
    )
    crawler = project / "crawler" / "models.py"
    crawler.write_text(_from_imports(crawler.read_text()))
    assert "Index" not in crawler.read_text().split("class ")[0]
    manage(project, "migrate", "-v0")
    out = manage(project, "suggest_indexes", "--write").stdout
    assert "indexes written" in out
    assert "m.Index(fields=" in publisher.read_text()
    assert "models.Index(" not in publisher.read_text()
    written = crawler.read_text()
    assert "from django.db import models\n" in written and "models.Index(fields=" in written
    # Every command imports the models again: none fails with NameError.
    assert manage(project, "check").returncode == 0
    assert manage(project, "makemigrations", "--check", "--dry-run").stdout.strip() == (
        "No changes detected"
    )
    manage(project, "migrate", "-v0")


def test_a_module_whose_names_cannot_be_told_is_refused_and_nothing_written(project):
    publisher = project / "publisher" / "models.py"
    (project / "publisher" / "base.py").write_text("from django.db import models  # noqa\n")
    publisher.write_text(
        publisher.read_text().replace("from django.db import models\n", "from .base import *\n")
    )
    before = {path: path.read_text() for path in project.rglob("*.py")}
    result = manage(project, "suggest_indexes", "--write", check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "publisher/models.py takes names from '.base'" in result.stderr
    assert {path: path.read_text() for path in project.rglob("*.py")} == before


def test_the_missing_import_goes_before_the_classes_when_the_module_imports_at_its_end():
    source = (
        "from django.db.models import CharField, Model\n\n\n"
        "class Book(Model):\n    title = CharField(max_length=10)\n\n\n"
        "from . import signals  # noqa: E402\n"
    )
    written = with_import(source, "from django.db import models")
    assert written.index("from django.db import models") < written.index("class Book")
