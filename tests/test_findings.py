import ast

from django_dbtune.findings import ProposedIndex


def test_a_partial_index_is_written_as_python_whatever_its_constant():
    for value, literal in [("open", '"open"'), (True, "True"), (3, "3"), (None, "None")]:
        index = ProposedIndex(("-priority",), "x_idx", condition_lookup=("flag", value))
        code = index.as_code(q="models.Q")
        assert f"condition=models.Q(flag={literal})" in code
        ast.parse(code)


def test_an_index_that_places_nulls_is_written_as_the_index_the_migration_adds():
    from django.db import models

    index = ProposedIndex(("shelf", "-name", "id"), "x_idx", nulls=(("shelf", True),))
    code = index.as_code()
    assert code == (
        'models.Index(models.F("shelf").asc(nulls_first=True), models.F("name").desc(), "id",'
        ' name="x_idx")'
    )
    assert eval(code, {"models": models}).deconstruct() == index.as_index().deconstruct()
    last = ProposedIndex(("-built",), "y_idx", nulls=(("built", False),))
    assert (
        last.as_code(f="F", index="Index")
        == 'Index(F("built").desc(nulls_last=True), name="y_idx")'
    )
    assert index.as_dict()["nulls_first"] == ["shelf"] and last.as_dict()["nulls_last"] == [
        "built"
    ]
