"""Every SQL statement of matchstats, one readable .sql file each."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load_sql(name: str) -> bytes:
    # bytes, because psycopg takes a query it did not see as a literal only as bytes or sql.SQL.
    return (resources.files(__package__) / f"{name}.sql").read_bytes()
