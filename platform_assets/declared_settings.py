"""Every environment variable the platform reads, declared once: name, group, default, documentation.

Read through :mod:`platform_assets.config` (the only module that reads the environment); listed in
``docs/configuration.md``. Standard library only: the serving environment imports it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    """One environment variable the platform reads.

    ``default`` is the value when it is unset (``None``: unset means off, or derived as ``doc`` says);
    ``prod`` says that the ``prod`` profile refuses to start without it; a ``secret`` is masked when shown.
    """

    name: str
    group: str
    doc: str
    default: str | None = None
    secret: bool = False
    prod: bool = False


_S = Setting
SETTINGS: tuple[Setting, ...] = (
    # -- where state lives and which environment this is
    _S("PLATFORM_PROFILE", "profile", "`local` (embedded: files under the state root) or `prod` (the services "
       "below; every setting marked prod must be set).", "local"),
    _S("PLATFORM_HOME", "profile", "The state root. Local: every file of every stage. Prod: caches only.",
       str(PROJECT_ROOT / ".platform")),
    _S("PLATFORM_SHARED_STORE", "profile", "Prod: where training sets, reports and model bundles are kept, "
       "shared by every run pod (a path on shared storage, or an fsspec URL). Local: the state root.", prod=True),
    _S("PLATFORM_DBT_PROJECT_DIR", "profile", "The dbt project of every use case's models.",
       str(PROJECT_ROOT / "dbt")),
    _S("PLATFORM_FEATURE_REPO", "profile", "The Feast repository of every use case's views.",
       str(PROJECT_ROOT / "feature_repo")),
    _S("PLATFORM_PARTITIONS_START", "profile", "The first day of the daily partitions (YYYY-MM-DD); unset: the "
       "day `generate` recorded under the state root, else 2025-01-01."),
    _S("LANDING_URL", "profile", "Where landing files arrive: any fsspec URL (`s3://bucket/landing` with s3fs "
       "installed); each source reads its own folder under it. Unset: `<state root>/landing`."),
    _S("PLATFORM_DUCKDB_PATH", "profile", "The DuckDB warehouse dbt builds in (set by the platform for dbt; "
       "unset: the one under the state root)."),
    _S("DBT_TARGET", "profile", "The output of dbt/profiles.yml dbt builds with: `local` (a DuckDB file) or `lake` "
       "(the prod DuckLake); set by the platform from the warehouse it runs on.", "local"),
    _S("PLATFORM_LAKE_DATA_PATH", "profile", "The DuckLake's data files, for dbt (set by the platform)."),
    _S("PLATFORM_DUCKDB_EXTENSION_DIR", "profile", "Where the duckdb-ext wheels keep the DuckLake and PostgreSQL "
       "extensions, for dbt (set by the platform)."),
    _S("DBT_INDIRECT_SELECTION", "profile", "dbt's choice of tests for a subset of models (the platform sets "
       "`buildable`).", "buildable"),
    # -- services
    _S("DAGSTER_HOME", "services", "Dagster's instance folder (its dagster.yaml); unset: "
       "`<state root>/dagster_home`."),
    _S("DAGSTER_POSTGRES_URL", "services", "Prod: Dagster's run, event and schedule storage "
       "(postgresql://user:password@host:port/db).", secret=True, prod=True),
    _S("PLATFORM_WAREHOUSE_URL", "services", "Prod: the warehouse's catalog, a PostgreSQL database "
       "(postgresql://user:password@host:port/db); its tables' data files go under the shared store. "
       "Local: one DuckDB file under the state root.", secret=True, prod=True),
    _S("MLFLOW_TRACKING_URI", "services", "MLflow's tracking and registry backend; unset: SQLite under the state "
       "root. Prod: postgresql://...", secret=True, prod=True),
    _S("MLFLOW_UI_URL", "services", "Where people open MLflow (links in reports and lineage).",
       "http://127.0.0.1:5000"),
    _S("FEAST_REGISTRY_URL", "services", "Prod: Feast's SQL registry (postgresql+psycopg://...).",
       secret=True, prod=True),
    _S("FEAST_REDIS_CONNECTION_STRING", "services", "Prod: Feast's Redis online store (host:port[,password=...]).",
       secret=True, prod=True),
    # -- secrets
    _S("PII_HMAC_KEY", "secrets", "The key of the tokens that replace personal data (at least 16 characters; "
       "required outside `local`).", secret=True, prod=True),
    _S("PII_SALT", "secrets", "Deprecated name of PII_HMAC_KEY (read when that is unset, with a warning).",
       secret=True),
    _S("PLATFORM_ALERT_WEBHOOK_URL", "secrets", "Alerts are also POSTed here (a webhook URL holds its token).",
       secret=True),
    # -- automation and thresholds
    _S("PLATFORM_AUTOMATION_INTERVAL_S", "automation", "Seconds between ticks of the automation and platform "
       "sensors.", "30"),
    _S("PLATFORM_RETRAIN_CRON", "automation", "When the model retrains at the latest (cron, UTC).", "0 3 * * 1"),
    _S("PLATFORM_DRIFT_CRON", "automation", "When the drift report runs without new traffic (cron, UTC).",
       "0 * * * *"),
    _S("PLATFORM_LANDING_MAX_ATTEMPTS", "automation", "Runs the landing sensor asks for one day's files before "
       "it stops asking until they change.", "3"),
    _S("PLATFORM_RETRAIN_DRIFT_SHARE", "automation", "Share of drifted model inputs above which the drift check "
       "warns and the drift sensor asks for a retrain.", "0.3"),
    _S("PLATFORM_RETRAIN_AUC_DROP", "automation", "Fall of live ROC AUC below the model's test AUC above which the "
       "quality check fails and the drift sensor asks for a retrain.", "0.05"),
    _S("PLATFORM_RETRAIN_COOLDOWN_DAYS", "automation", "Days after a retrain before drift asks for another.", "7"),
    _S("PLATFORM_RETRAIN_MIN_NEW_LABELS", "automation", "New known outcomes that ask for a retrain.", "5000"),
    _S("PLATFORM_RETRAIN_MIN_ROWS_SINCE_DRIFT", "automation", "Labelled rows since quality fell before that "
       "retrain runs on them.", "1000"),
    # -- how much a stage holds at once
    _S("PLATFORM_BATCH_ROWS", "scale", "Rows a stage holds in memory at once: a range run ingests and validates "
       "its days in batches of whole days up to this many rows (a larger day is a batch of its own); the training "
       "set asks Feast for this many rows' features at a time; the online store loads windows of days this "
       "large.", "250000"),
    _S("PLATFORM_DUCKDB_MEMORY", "scale", "DuckDB's memory limit in the warehouse's connections, dbt's and the "
       "platform's own queries over Parquet (DuckDB's size syntax: `1GB`); past it DuckDB spills to disk.", "2GB"),
    # -- deployment (the platform's side)
    _S("PLATFORM_RUN_EXECUTOR", "deploy", "`in_process` (every step of a run in one process) or `k8s_job` (each "
       "step in its own Kubernetes pod).", "in_process"),
    _S("PLATFORM_DEPLOY_TARGET", "deploy", "`local` (blue/green behind a router here) or `kubernetes` "
       "(a SeldonDeployment).", "local"),
    _S("SERVING_PYTHON", "deploy", "The serving environment's python; unset: `.venv-serving/bin/python`."),
    _S("SERVING_PORT", "deploy", "The first use case's stable endpoint port (each next use case: +1).", "9100"),
    _S("SERVING_HOST", "deploy", "The address the local endpoints listen on.", "127.0.0.1"),
    _S("SELDON_NAMESPACE", "deploy", "Kubernetes namespace of the SeldonDeployments.", "ml"),
    _S("SELDON_IMAGE", "deploy", "The model server image.",
       "registry.local/platform-model-server:latest"),
    _S("SELDON_FETCH_IMAGE", "deploy", "The image of the init container that fetches a version's bundle.",
       "registry.local/platform-assets:latest"),
    _S("KUBECONFIG", "deploy", "kubectl's configuration; unset: in-cluster or ~/.kube/config."),
    # -- the model server (set by the platform for the processes it starts; Seldon's names where Seldon has one)
    _S("MODEL_DIR", "model server", "The bundle the model server loads."),
    _S("MODEL_NAME", "model server", "The registered model's name; unset: the bundle's."),
    _S("MODEL_VERSION", "model server", "The registered version; unset: the bundle's."),
    _S("SERVING_ROLE", "model server", "The release's role: stable, canary or shadow."),
    _S("USE_CASE", "model server", "The declared use case the model serves."),
    _S("USE_CASE_DECLARATION", "model server", "The use case's declaration as JSON (instead of USE_CASE)."),
    _S("INFERENCE_LOG_DIR", "model server", "Where served predictions are logged (JSON lines per day)."),
    _S("FEATURE_SERVER_URL", "model server", "Feast's feature server, for requests that carry ids only."),
    _S("FEATURE_LOOKUP_TIMEOUT_S", "model server", "Seconds one online feature lookup may take.", "2"),
    _S("FEATURE_LOOKUP_IN_FLIGHT", "model server", "Lookups one worker coalesces (0: none).", "1"),
    _S("PREDICTIVE_UNIT_HTTP_SERVICE_PORT", "model server", "The model server's HTTP port.", "9000"),
    _S("PREDICTIVE_UNIT_METRICS_SERVICE_PORT", "model server", "Its Prometheus port (0: off).", "6000"),
    _S("PREDICTIVE_UNIT_PARAMETERS", "model server", "Seldon model parameters (JSON list).", "[]"),
    _S("GUNICORN_WORKERS", "model server", "Worker processes.", "2"),
    _S("GUNICORN_THREADS", "model server", "Requests one worker scores at once.", "1"),
    _S("GUNICORN_KEEPALIVE", "model server", "Seconds an idle connection stays open.", "5"),
    _S("SERVING_READ_TIMEOUT_S", "model server", "Seconds a client has to send one whole request.", "10"),
    _S("SERVING_MAX_BODY_MB", "model server", "The largest request body.", "16"),
    _S("TRACING", "model server", "1: Seldon's own (slower, traced) request path.", "0"),
    _S("SERVING_STABLE_CONTROL", "model server", "The router's socket that hands the stable port to the "
       "workers (set by the platform)."),
    _S("SERVING_UPSTREAM_URL", "model server", "The worker's own address, told to the router with the port "
       "(set by the platform)."),
)
