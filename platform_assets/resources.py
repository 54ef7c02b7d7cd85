"""Resources shared by the stages: state root, warehouse, feature store, MLflow.

Values come from environment variables (``dg.EnvVar``) where one is set and
from the embedded defaults under the state root otherwise; see
:mod:`platform_assets.settings`. Heavy libraries (feast, mlflow) are imported
inside methods so that loading the code location stays fast.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import dagster as dg

from platform_assets import settings


class PlatformState(dg.ConfigurableResource):
    """The state root that holds every stage's local files."""

    root: str

    @property
    def paths(self) -> settings.StatePaths:
        """The layout under the root."""
        return settings.paths(self.root)


class Landing(dg.ConfigurableResource):
    """Where new data files arrive: any fsspec URL (a local folder, ``s3://``, ``gs://``)."""

    url: str


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


    def replace_tables(self, tables: "dict[str, pandas.DataFrame]") -> None:  # noqa: F821
        """Replaces every ``schema.table`` in ``tables`` in one transaction.

        Either all tables change or none does: a step killed or failing half way
        leaves the previous version of each table intact and visible.
        """
        with self.transaction() as con:
            for name, frame in tables.items():
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {name.split('.', 1)[0]}")
                con.register("_incoming", frame)
                con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _incoming")
                con.unregister("_incoming")

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


class FeatureStore(dg.ConfigurableResource):
    """The Feast repository (``feature_repo/``) with its registry and stores under the state root."""

    repo_path: str
    state_root: str

    def store(self) -> "feast.FeatureStore":  # noqa: F821
        """Returns a ``feast.FeatureStore`` for the repository."""
        # feature_store.yaml and the feature definitions read PLATFORM_HOME.
        os.environ[settings.STATE_ROOT_ENV] = self.state_root
        from feast import FeatureStore as _FeatureStore

        return _FeatureStore(repo_path=self.repo_path)


class MlflowRegistry(dg.ConfigurableResource):
    """MLflow tracking backend and the registered model that the platform trains."""

    tracking_uri: str
    experiment_name: str = "loan-default"
    registered_model_name: str = "loan-default"
    artifact_root: str = ""

    def client(self) -> "mlflow.MlflowClient":  # noqa: F821
        """Returns an ``MlflowClient`` on the tracking backend."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        return mlflow.MlflowClient(self.tracking_uri)

    def ensure_experiment(self) -> str:
        """Creates the experiment with its artifact location if missing; returns its id."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        experiment = mlflow.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.artifact_root:
            Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
            location = Path(self.artifact_root).resolve().as_uri()
        return mlflow.create_experiment(self.experiment_name, artifact_location=location)


@dg.resource(
    config_schema={
        "experiment_name": dg.Field(dg.StringSource),
        "mlflow_tracking_uri": dg.Field(dg.StringSource),
        "artifact_root": dg.Field(dg.StringSource, is_required=False, default_value=""),
        "env_to_tag": dg.Field(dg.Noneable(list), is_required=False, default_value=None),
        "extra_tags": dg.Field(dg.Permissive(), is_required=False),
    },
    description="dagster-mlflow's MLflow run resource, imported lazily.",
)
def mlflow_tracking(init_context: dg.InitResourceContext):
    """dagster-mlflow's ``MlFlow`` resource, with mlflow imported only when a step needs it.

    ``dagster_mlflow`` imports mlflow at module level (about 2 s), which would
    slow down every load of the code location. The experiment is created first
    with its artifact location under the state root, since dagster-mlflow's
    ``set_experiment`` would otherwise put artifacts in the working directory.
    """
    from dagster_mlflow.resources import MlFlow

    config = init_context.resource_config
    MlflowRegistry(
        tracking_uri=config["mlflow_tracking_uri"],
        experiment_name=config["experiment_name"],
        artifact_root=config["artifact_root"],
    ).ensure_experiment()
    return MlFlow(init_context)


class ModelServing(dg.ConfigurableResource):
    """The local model server: the serving environment's Python and the address to listen on."""

    serving_python: str = ""
    http_port: int = 9100
    # Loopback by default: the server has no authentication. "0.0.0.0" listens on every interface.
    host: str = "127.0.0.1"
    start_timeout_s: float = 120.0

    def python_path(self) -> Path:
        """The serving environment's interpreter (default: ``<project>/.venv-serving/bin/python``)."""
        return Path(self.serving_python or settings.PROJECT_ROOT / ".venv-serving" / "bin" / "python")

    def pid_path(self, paths: settings.StatePaths) -> Path:
        """Where the running server is recorded."""
        return paths.serving / "server.json"


class PiiMasking(dg.ConfigurableResource):
    """The secret key of the HMAC tokens that replace personal data (``PII_HMAC_KEY`` outside local mode)."""

    key: str
    # True when ``key`` is the built-in development key: runs say so in their log and metadata.
    development_key: bool = False

    @property
    def key_source(self) -> str:
        """``development`` or ``configured``: recorded with every validation run."""
        return "development" if self.development_key else "configured"

    @classmethod
    def from_environment(cls, pinned: bool = False) -> "PiiMasking":
        """The resource as the environment decides it (:func:`settings.pii_key_setting`).

        The key itself is passed as ``dg.EnvVar``, so it is read at run time and
        never shown in the UI's resource config. ``pinned`` (tests with their own
        state root) ignores the environment and uses the development key.

        Raises:
            settings.ConfigurationError: Outside the local profile without a usable key.
        """
        setting = settings.PiiKeySetting(None) if pinned else settings.pii_key_setting()
        if setting.variable is None:
            return cls(key=settings.DEVELOPMENT_PII_KEY, development_key=True)
        return cls(key=dg.EnvVar(setting.variable), development_key=False)
