"""What ``index_health`` reads of each table and index, whatever the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class TableStats:
    table: str
    model: str
    rows: int
    table_bytes: int
    index_bytes: int
    seq_scans: int | None
    """None where the database keeps no such count (MariaDB, MySQL)."""
    index_scans: int | None


@dataclass
class IndexStats:
    name: str
    table: str
    model: str
    bytes: int
    scans: int | None
    """None where the database keeps no such count (MariaDB, MySQL)."""
    primary: bool
    unique: bool
    valid: bool
    columns: tuple[str, ...] = ()
    constraint: bool = False
    """It backs a constraint (primary key, unique, exclusion)."""
    method: str = "btree"
    """PostgreSQL's access method: ``btree``, ``gin``, ``gist``..."""
    kept: str | None = None
    """Why an index no query used is not advised for removal (None: it is, or it is used)."""
    counted_since: datetime | None = None
    """MariaDB and MySQL: when its count of reads began, where that is after the server
    started (an ALTER TABLE of its table, a migration's or a trial index's, starts it
    again)."""
    scans_by_node: dict[str, int] = field(default_factory=dict)
    """With replicas: the scans counted on each database alias (``scans`` is their sum)."""
