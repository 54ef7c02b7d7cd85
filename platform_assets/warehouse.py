"""The warehouse resource: short-lived connections, atomic writes, in DuckDB's dialect either way.

Local (the embedded default): one DuckDB file. DuckDB lets one process write a
database file, and a reader in another process blocks a writer (and the
reverse): :meth:`Warehouse.connect` waits for the lock within a bound, and every
write happens in one transaction.

Prod: DuckLake, its catalog in PostgreSQL (``catalog``) and its Parquet data
files on the shared store (``data_path``). Many processes read and write at
once; a commit that collides with another is retried (DuckLake's own retry for
the catalog, ours for two writes to one data file), and each table is
partitioned by ``_partition`` so that runs of different days write different
files. The extensions come from PyPI wheels (``duckdb-ext-*``, locked to the
DuckDB release), loaded offline.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import dagster as dg

from platform_assets.sql import quoted


# The name the DuckLake catalog is attached as (and made the default database).
LAKE = "lake"
# How many times a write that collided with another writer's commit is tried in all.
COMMIT_ATTEMPTS = 8


def lake_attach_sql(catalog: str, data_path: str, read_only: bool = False) -> str:
    """The ATTACH statement of the DuckLake whose catalog is the PostgreSQL database ``catalog`` (a URL or a
    libpq string) and whose data files go under ``data_path``."""
    quote = lambda s: s.replace("'", "''")  # noqa: E731
    options = [f"DATA_PATH '{quote(data_path.rstrip('/') + '/')}'"] + (["READ_ONLY"] if read_only else [])
    return f"ATTACH 'ducklake:postgres:{quote(catalog)}' AS {LAKE} ({', '.join(options)})"


def duckdb_settings(spill_to: Path | None = None) -> dict[str, str]:
    """The settings of every DuckDB connection the platform opens: its memory limit (``PLATFORM_DUCKDB_MEMORY``),
    past which DuckDB spills to disk: beside a database file, or to ``spill_to`` (an in-memory database)."""
    from platform_assets import config

    settings = {"memory_limit": config.get("PLATFORM_DUCKDB_MEMORY")}
    if spill_to is not None:
        settings["temp_directory"] = str(spill_to)
    return settings


def extension_dir() -> str:
    """Where the DuckDB extension wheels (ducklake, postgres) put their files, for offline LOAD."""
    import duckdb_ext

    return duckdb_ext.get_extension_dir()


class Warehouse(dg.ConfigurableResource):
    """The warehouse that holds raw, validated, quarantine, monitoring and dbt tables.

    ``database``: the DuckDB file (local). ``catalog`` and ``data_path``: the DuckLake (prod), which wins when set.
    """

    database: str = ""
    catalog: str = ""
    data_path: str = ""
    # How long a connection waits for another process's lock on the file before failing.
    lock_timeout_s: float = 120.0

    @property
    def is_lake(self) -> bool:
        return bool(self.catalog)

    @property
    def where(self) -> str:
        """What the warehouse is, for messages (never the catalog's credentials)."""
        if self.is_lake:
            host = self.catalog.rsplit("@", 1)[-1] if "://" in self.catalog else "PostgreSQL"
            return f"DuckLake (catalog {host}, data {self.data_path})"
        return self.database

    def exists(self) -> bool:
        """Whether there is anything to read yet (a DuckLake always answers)."""
        return self.is_lake or Path(self.database).exists()

    @contextlib.contextmanager
    def _lake(self, read_only: bool) -> Iterator["duckdb.DuckDBPyConnection"]:  # noqa: F821
        import duckdb

        con = duckdb.connect(config={"extension_directory": extension_dir(), "autoinstall_known_extensions": False})
        try:
            con.execute("LOAD ducklake; LOAD postgres")
            Path(self.data_path).mkdir(parents=True, exist_ok=True)
            con.execute(lake_attach_sql(self.catalog, self.data_path, read_only))
            con.execute(f"USE {LAKE}")
            con.execute("SET ducklake_max_retry_count = 100")
            yield con
        finally:
            con.close()

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

        if self.is_lake:
            with self._lake(read_only) as con:
                yield con
            return
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        timeout = self.lock_timeout_s if lock_timeout_s is None else lock_timeout_s
        deadline, pause, waited = time.monotonic() + timeout, 0.05, False
        while True:
            try:
                con = duckdb.connect(self.database, read_only=read_only, config=duckdb_settings())
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
        import duckdb

        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                return self._replace_partitions_once(tables, column, keys)
            except duckdb.TransactionException as exc:  # another writer committed to the same file or table first
                if not self.is_lake or attempt == COMMIT_ATTEMPTS:
                    raise
                import logging
                import random
                import time

                logging.getLogger(__name__).info("%s: commit collided (%s); try %d of %d", self.where, exc,
                                                 attempt + 1, COMMIT_ATTEMPTS)
                time.sleep(random.uniform(0.05, 0.2) * 2 ** attempt)

    def _replace_partitions_once(self, tables, column: str, keys) -> None:
        with self.transaction() as con:
            existing = table_names(con)
            for name, frame in tables.items():
                if column not in frame.columns:
                    raise ValueError(f"{name}: incoming rows lack the partition column {column!r}")
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {name.split('.', 1)[0]}")
                con.register("_incoming", _typed_text(frame))
                con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM _incoming LIMIT 0")
                if self.is_lake and name not in existing:
                    # Runs of different days write different files, so their commits do not collide.
                    con.execute(f"ALTER TABLE {name} SET PARTITIONED BY ({column})")
                values = [k for k in keys if k is not None]
                condition = " OR ".join(
                    ([f"{column} IN ({', '.join('?' for _ in values)})"] if values else [])
                    + ([f"{column} IS NULL"] if None in keys else [])
                )
                _require_column(con, name, column)
                kept = con.execute(f"SELECT count(*) FROM {name}" + (f" WHERE NOT ({condition})" if condition else ""),
                                   values).fetchone()[0]
                if not frame.empty and kept == 0 and not self.is_lake:
                    # Nothing else is kept: the incoming rows decide the column types. (DuckLake 0.3 cannot commit
                    # two tables replaced in one transaction: there the columns are widened as below.)
                    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _incoming")
                else:
                    # Columns change before rows: DuckDB refuses a table altered after a delete in one transaction.
                    if not frame.empty:  # an empty batch only deletes, and decides no types
                        _align_columns(con, name)
                    if condition:
                        con.execute(f"DELETE FROM {name} WHERE {condition}", values)
                    if not frame.empty:
                        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _incoming")
                con.unregister("_incoming")


def table_names(con) -> set[str]:
    """The ``schema.table`` names that exist in the database behind ``con``."""
    return {f"{s}.{t}" for s, t in con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = current_database()"
    ).fetchall()}


_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL")


def _typed_text(frame):
    """``frame`` with its object columns that hold no value (an empty batch, a column of NULLs) typed as text:
    DuckDB 1.4 reads such a column as INTEGER, and a table created from it could never hold a day's name."""
    empty_text = [c for c in frame.columns if frame[c].dtype == object and frame[c].isna().all()]
    return frame.astype({c: "string" for c in empty_text}) if empty_text else frame


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
            con.execute(f"ALTER TABLE {table} ADD COLUMN {quoted(name)} {kind}")
        elif current != kind and current != "VARCHAR" and kind != '"NULL"':
            numeric = current.startswith(_NUMERIC) and kind.startswith(_NUMERIC)
            if numeric and current == "DOUBLE":
                continue
            con.execute(f"ALTER TABLE {table} ALTER COLUMN {quoted(name)} TYPE {'DOUBLE' if numeric else 'VARCHAR'}")


def profile_warehouse(root: str | Path | None = None) -> Warehouse:
    """The warehouse of the running profile: the DuckDB file under the state root (local) or the DuckLake whose
    catalog is ``PLATFORM_WAREHOUSE_URL`` with its data under the state root, the shared store (prod)."""
    from platform_assets import config, settings

    paths = settings.paths(root)
    if config.profile() == config.PROD_PROFILE:
        return Warehouse(catalog=config.get("PLATFORM_WAREHOUSE_URL") or "", data_path=str(paths.lake_data))
    return Warehouse(database=str(paths.warehouse))
