"""Where state lives and which environment we run in: the one place that decides.

All local state (landing files, the DuckDB warehouse, Dagster's storage, the
Feast registry and online store, MLflow's backend and artifacts, reports and
the serving process) sits under one state root, chosen by ``PLATFORM_HOME``
(default: ``.platform`` inside the project, git-ignored). Production swaps
backends through environment variables only (see ``docs/operations.md``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STATE_ROOT_ENV = "PLATFORM_HOME"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def state_root() -> Path:
    """Returns the state root: ``$PLATFORM_HOME`` or ``<project>/.platform``."""
    value = os.environ.get(STATE_ROOT_ENV)
    return Path(value).expanduser().resolve() if value else PROJECT_ROOT / ".platform"


@dataclass(frozen=True)
class StatePaths:
    """The layout of the state root; every stage finds its files here."""

    root: Path

    @property
    def landing(self) -> Path:
        """Where new data files arrive (one file per day)."""
        return self.root / "landing" / "applications"

    @property
    def warehouse(self) -> Path:
        """The DuckDB warehouse file (raw, validated, quarantine and dbt schemas)."""
        return self.root / "warehouse" / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        """DAGSTER_HOME for the embedded SQLite storage."""
        return self.root / "dagster_home"

    @property
    def feast(self) -> Path:
        """Feast registry, online store and offline Parquet exports."""
        return self.root / "feast"

    @property
    def training_set(self) -> Path:
        """The training set (Parquet, one row per labelled application, with its split)."""
        return self.root / "training" / "training_set.parquet"

    @property
    def mlflow(self) -> Path:
        """MLflow backend database and artifact store."""
        return self.root / "mlflow"

    @property
    def reports(self) -> Path:
        """Evaluation and drift reports (Markdown, HTML, PNG)."""
        return self.root / "reports"

    @property
    def serving(self) -> Path:
        """Deployed model bundles, the serving process's pid file and logs."""
        return self.root / "serving"

    @property
    def inference(self) -> Path:
        """The inference log (served predictions with their model version)."""
        return self.root / "inference"


def paths(root: str | Path | None = None) -> StatePaths:
    """Returns the state layout under ``root`` (default: :func:`state_root`)."""
    return StatePaths(Path(root).resolve() if root else state_root())


def mlflow_tracking_uri(root: str | Path | None = None) -> str:
    """Returns ``$MLFLOW_TRACKING_URI`` or a SQLite backend under the state root."""
    value = os.environ.get("MLFLOW_TRACKING_URI")
    if value:
        return value
    return f"sqlite:///{paths(root).mlflow / 'mlflow.db'}"
