import ast

from django_dbtune.findings import ProposedIndex


def test_a_partial_index_is_written_as_python_whatever_its_constant():
    for value, literal in [("open", '"open"'), (True, "True"), (3, "3"), (None, "None")]:
        index = ProposedIndex(("-priority",), "x_idx", condition_lookup=("flag", value))
        code = index.as_code(q="models.Q")
        assert f"condition=models.Q(flag={literal})" in code
        ast.parse(code)
