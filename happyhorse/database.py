"""Creating a database's tables safely when several processes start at once.

Two `happyhorse serve` processes (or an API server and a worker) that start together against an empty
PostgreSQL database both see no table and both run CREATE TABLE; the second fails with a
UniqueViolation on `pg_type_typname_nsp_index`. So on PostgreSQL the tables are created inside one
transaction that first takes a transaction-level advisory lock: one process creates, the others wait
for it, then find the tables there. SQLite serialises writers on its file lock already.
"""

from __future__ import annotations

import zlib

from sqlalchemy import MetaData, text
from sqlalchemy.engine import Engine

LOCK_KEY = zlib.crc32(b"happyhorse schema")  # the advisory lock every HappyHorse process takes to create tables


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """`metadata.create_all` on `engine`, under the schema lock where the database has one."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        metadata.create_all(conn)
