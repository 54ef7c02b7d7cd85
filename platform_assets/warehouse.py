"""The DuckDB warehouse resource: short-lived connections that wait for the file lock, atomic writes.

DuckDB lets one process write a database file, and a reader in another
process blocks a writer (and the reverse): :meth:`Warehouse.connect` waits for
the lock within a bound, and every write happens in one transaction.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import dagster as dg


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file that holds raw, validated, quarantine and dbt tables."""

    database: str
    # How long a connection waits for another process's lock on the file before failing.
    lock_timeout_s: float = 120.0

    @contextlib.contextmanager
    def connect(
        self, read_only: bool = False, lock_timeout_s: float | None = None
    ) -> Iterator["duckdb.DuckDBPyConnection"]:  # noqa: F821
        """Opens a connection for one unit of work and always closes it.

        DuckDB allows one writing process per file, and a reader in another
        process excludes a writer; connections are held only while a step
        works, so dbt (a subprocess) can open the file after us. While another
        process holds the file (a run started outside the queue, the landing
        sensor's read), the connection is retried with backoff.

        Args:
            read_only: Open for reading only.
            lock_timeout_s: How long to wait for the lock (default: the
                resource's ``lock_timeout_s``; 0 fails at once).

        Raises:
            TimeoutError: If the file is still locked after the wait; the
                message names the file and the process that holds it.
        """
        import logging
        import random
        import time

        import duckdb

        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        timeout = self.lock_timeout_s if lock_timeout_s is None else lock_timeout_s
        deadline, pause, waited = time.monotonic() + timeout, 0.05, False
        while True:
            try:
                con = duckdb.connect(self.database, read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{self.database}: the warehouse stayed locked by another process for {timeout:g} s "
                        f"(Warehouse.lock_timeout_s): {exc}"
                    ) from exc
                if not waited:  # said once per connection; a run's log shows why its step paused
                    logging.getLogger(__name__).warning(
                        "%s is locked by another process; waiting up to %g s: %s", self.database, timeout, exc
                    )
                    waited = True
                # Jittered, doubling pauses: two waiting runs do not retry in step.
                time.sleep(min(pause * random.uniform(0.5, 1.5), max(deadline - time.monotonic(), 0)))
                pause = min(pause * 2, 2.0)
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator["duckdb.DuckDBPyConnection"]:  # noqa: F821
        """A writing connection inside one transaction: committed at the end, rolled back on any error."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def replace_partitions(
        self, tables: "dict[str, pandas.DataFrame]", column: str, keys: "list[str | None]"  # noqa: F821
    ) -> None:
        """Replaces the rows of the partitions ``keys`` in every ``schema.table``, in one transaction.

        Rows whose ``column`` is in ``keys`` (``None`` stands for NULL) are deleted
        and the incoming rows inserted by column name; other partitions are not
        touched. A table is created on first write. Where a later batch brings a
        column in another type (text from a CSV file where Parquet gave numbers)
        the column is widened (to DOUBLE for two numeric types, else VARCHAR),
        so that values are kept as they arrived. Either every table changes or
        none does: a step killed half way leaves the previous partitions intact.
        """
        with self.transaction() as con:
            for name, frame in tables.items():
                if column not in frame.columns:
                    raise ValueError(f"{name}: incoming rows lack the partition column {column!r}")
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {name.split('.', 1)[0]}")
                con.register("_incoming", frame)
                con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM _incoming LIMIT 0")
                values = [k for k in keys if k is not None]
                condition = " OR ".join(
                    ([f"{column} IN ({', '.join('?' for _ in values)})"] if values else [])
                    + ([f"{column} IS NULL"] if None in keys else [])
                )
                _require_column(con, name, column)
                if condition:
                    con.execute(f"DELETE FROM {name} WHERE {condition}", values)
                if not frame.empty:  # an empty batch only deletes, and decides no types
                    if con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] == 0:
                        # Nothing else is kept: the incoming rows decide the column types.
                        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _incoming")
                    else:
                        _align_columns(con, name)
                        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _incoming")
                con.unregister("_incoming")


def table_names(con) -> set[str]:
    """The ``schema.table`` names that exist in the database behind ``con``."""
    return {f"{s}.{t}" for s, t in con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables").fetchall()}


_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL")


def _require_column(con, table: str, column: str) -> None:
    """Fails with a clear message when ``table`` predates partitioning (has no partition column)."""
    if column not in {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}:
        raise ValueError(
            f"{table} has no partition column {column!r}: it was written by an older, "
            "unpartitioned layout; drop it (or run `make clean`) and materialize again"
        )


def _align_columns(con, table: str) -> None:
    """Makes ``table`` able to take the registered ``_incoming`` rows: adds or widens columns."""
    existing = {r[0]: r[1] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    for name, kind, *_ in con.execute("DESCRIBE _incoming").fetchall():
        current = existing.get(name)
        if current is None:
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {kind}')
        elif current != kind and current != "VARCHAR" and kind != '"NULL"':
            numeric = current.startswith(_NUMERIC) and kind.startswith(_NUMERIC)
            if numeric and current == "DOUBLE":
                continue
            con.execute(f'ALTER TABLE {table} ALTER COLUMN "{name}" TYPE {"DOUBLE" if numeric else "VARCHAR"}')
