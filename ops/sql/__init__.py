"""The SQL that only the operator's command runs, one readable .sql file each; loaded the
way the layer loads its own (matchstats.db.sql), and never shipped to Lambda."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load_sql(name: str) -> bytes:
    # bytes, because psycopg takes a query it did not see as a literal only as bytes or sql.SQL.
    return (resources.files(__package__) / f"{name}.sql").read_bytes()
