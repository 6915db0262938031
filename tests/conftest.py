import os

import pytest
from django.db import connection

DB = os.environ.get("DBTUNE_DB", "sqlite")


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run with DBTUNE_DB=postgres")
