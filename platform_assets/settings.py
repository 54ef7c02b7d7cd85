"""Where state lives and which environment we run in: the one place that decides.

All local state (landing files, the DuckDB warehouse, Dagster's storage, the
Feast registry and online store, MLflow's backend and artifacts, reports and
the serving process) sits under one state root, chosen by ``PLATFORM_HOME``
(default: ``.platform`` inside the project, git-ignored). Some backends are
chosen by environment variables (MLflow's, the landing URL: see
``docs/operations.md``); the warehouse and the platform's own records stay
files under the state root. ``PLATFORM_PROFILE`` names the environment
(``local`` by default), and any profile other than ``local`` must provide its
secrets (``PII_HMAC_KEY``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from platform_assets import config
from platform_assets.config import PROJECT_ROOT, ConfigurationError  # noqa: F401 - re-exported

STATE_ROOT_ENV = "PLATFORM_HOME"


DBT_PROJECT_ENV = "PLATFORM_DBT_PROJECT_DIR"
FEATURE_REPO_ENV = "PLATFORM_FEATURE_REPO"


def dbt_project_dir() -> Path:
    """The dbt project of every use case's models: ``$PLATFORM_DBT_PROJECT_DIR`` or ``<project>/dbt``."""
    return config.get_path(DBT_PROJECT_ENV)


def feature_repo_dir() -> Path:
    """The Feast repository of every use case's views: ``$PLATFORM_FEATURE_REPO`` or ``<project>/feature_repo``."""
    return config.get_path(FEATURE_REPO_ENV)


def state_root() -> Path:
    """Returns the state root, where every stage's files live.

    Local: ``$PLATFORM_HOME`` (default ``<project>/.platform``). Prod: the shared store
    (``$PLATFORM_SHARED_STORE``), which every run pod mounts; ``PLATFORM_HOME`` then holds caches only.
    """
    if config.profile() == config.PROD_PROFILE:
        return shared_store()
    return config.get_path(STATE_ROOT_ENV)


def shared_store() -> Path:
    """``$PLATFORM_SHARED_STORE``: a path, or a ``file://`` URL, of storage every run pod mounts.

    Raises:
        ConfigurationError: If it is unset, or a URL of another scheme (object stores hold landing files only:
            ``LANDING_URL``).
    """
    value = config.get("PLATFORM_SHARED_STORE")
    if not value:
        raise ConfigurationError("PLATFORM_SHARED_STORE is not set: the prod profile keeps every stage's files there")
    if "://" in value:
        scheme, rest = value.split("://", 1)
        if scheme != "file":
            raise ConfigurationError(f"PLATFORM_SHARED_STORE={value!r}: want a path or a file:// URL of a volume "
                                     "every run pod mounts (object stores serve landing files only: LANDING_URL)")
        value = rest
    return Path(value).expanduser().resolve()


def feature_store_yaml() -> Path:
    """The Feast configuration of the profile: ``feature_store.yaml`` (files under the state root) or, in prod,
    ``feature_store.prod.yaml`` (SQL registry on PostgreSQL, Redis online store)."""
    name = "feature_store.prod.yaml" if config.profile() == config.PROD_PROFILE else "feature_store.yaml"
    return feature_repo_dir() / name


@dataclass(frozen=True)
class UseCasePaths:
    """The files of one use case under the state root: ``<kind>/<use case>/``."""

    root: Path
    name: str

    @property
    def outcomes(self) -> Path:
        """Where its outcome files arrive (``outcomes_YYYY-MM-DD.csv``: the outcomes that became known that day)."""
        return self.root / "landing" / "outcomes" / self.name

    @property
    def training_set(self) -> Path:
        """Its training set (Parquet, one row per labelled row, with its split)."""
        return self.root / "training" / self.name / "training_set.parquet"

    @property
    def reports(self) -> Path:
        """Its evaluation and drift reports (Markdown, HTML, PNG)."""
        return self.root / "reports" / self.name

    @property
    def serving(self) -> Path:
        """Its deployed model bundles, the serving process's records and logs."""
        return self.root / "serving" / self.name

    @property
    def inference(self) -> Path:
        """Its inference log (served predictions with their model version)."""
        return self.root / "inference" / self.name


@dataclass(frozen=True)
class StatePaths:
    """The layout of the state root; every stage finds its files here."""

    root: Path

    @property
    def landing(self) -> Path:
        """Where new data files arrive: one folder per source (``landing/<source folder>/``)."""
        return self.root / "landing"

    @property
    def warehouse(self) -> Path:
        """The DuckDB warehouse file (raw, validated, quarantine and dbt schemas of every use case)."""
        return self.root / "warehouse" / "warehouse.duckdb"

    @property
    def lake_data(self) -> Path:
        """The prod warehouse's (DuckLake's) Parquet data files; its catalog is in PostgreSQL."""
        return self.root / "warehouse" / "lake"

    @property
    def dagster_home(self) -> Path:
        """DAGSTER_HOME for the embedded SQLite storage."""
        return self.root / "dagster_home"

    @property
    def feast(self) -> Path:
        """Feast registry, online store and offline Parquet exports (every use case's views)."""
        return self.root / "feast"

    @property
    def feast_data(self) -> Path:
        """The Parquet exports of the dbt marts, Feast's offline sources."""
        return self.feast / "data"

    @property
    def mlflow(self) -> Path:
        """MLflow backend database and artifact store."""
        return self.root / "mlflow"

    def of(self, use_case: str) -> UseCasePaths:
        """The files of the use case called ``use_case``."""
        return UseCasePaths(self.root, use_case)


def paths(root: str | Path | None = None) -> StatePaths:
    """Returns the state layout under ``root`` (default: :func:`state_root`)."""
    return StatePaths(Path(root).resolve() if root else state_root())


def mlflow_tracking_uri(root: str | Path | None = None) -> str:
    """Returns ``$MLFLOW_TRACKING_URI`` or a SQLite backend under the state root."""
    value = config.get("MLFLOW_TRACKING_URI")
    if value:
        return value
    return f"sqlite:///{paths(root).mlflow / 'mlflow.db'}"


def mlflow_run_url(experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run (``MLFLOW_UI_URL``, default the local ``make mlflow-ui``)."""
    return _mlflow_page(f"experiments/{experiment_id}/runs/{run_id}")


def mlflow_artifact_url(experiment_id: str, run_id: str, artifact_path: str) -> str:
    """The MLflow UI page of a run with one of its artifacts open (the UI's ``artifactPath`` route)."""
    return _mlflow_page(f"experiments/{experiment_id}/runs/{run_id}/artifactPath/{artifact_path}")


def _mlflow_page(route: str) -> str:
    """A page of MLflow's UI (``MLFLOW_UI_URL``) in its model-training mode: MLflow 3 opens a link without
    ``workflowType`` in its GenAI mode (traces, an assistant), whatever the experiment's kind."""
    return f"{config.get('MLFLOW_UI_URL').rstrip('/')}/#/{route}?workflowType=machine_learning"


# The environment profile: ``local`` (the default) or any other name (``prod``, ``staging``).
PROFILE_ENV = "PLATFORM_PROFILE"
LOCAL_PROFILE = "local"
# The secret key of the tokens that replace personal data; PII_SALT is its old, deprecated name.
PII_KEY_ENV = "PII_HMAC_KEY"
PII_KEY_DEPRECATED_ENV = "PII_SALT"
DEVELOPMENT_PII_KEY = "local-development-pii-key: not a secret"
# A shorter key can be guessed; ``python -c "import secrets; print(secrets.token_hex(32))"`` makes one.
MIN_PII_KEY_CHARS = 16


class PiiKeyWarning(UserWarning):
    """Personal data is masked with the development key, or the key comes from a deprecated variable."""


def profile() -> str:
    """The environment profile: ``$PLATFORM_PROFILE`` (``local`` or ``prod``)."""
    return config.profile()


@dataclass(frozen=True)
class PiiKeySetting:
    """Where the PII key comes from: an environment variable, or the development key (``variable`` None)."""

    variable: str | None

    @property
    def source(self) -> str:
        """``configured`` for a key from the environment, ``development`` for the built-in one."""
        return "development" if self.variable is None else "configured"


def pii_key_setting() -> PiiKeySetting:
    """Decides which key masks personal data, and refuses to go on without one outside local mode.

    ``PII_HMAC_KEY`` is the key; ``PII_SALT`` is read when it is unset (deprecated,
    with a warning). In the ``local`` profile without either, the development key
    is used with a loud warning. Any other profile must set a key of at least
    ``MIN_PII_KEY_CHARS`` characters.

    Raises:
        ConfigurationError: Outside the local profile, when the key is unset,
            too short, or the development key.
    """
    import warnings

    variable = next((v for v in (PII_KEY_ENV, PII_KEY_DEPRECATED_ENV) if config.is_set(v)), None)
    if variable == PII_KEY_DEPRECATED_ENV:
        warnings.warn(
            f"{PII_KEY_DEPRECATED_ENV} is deprecated: rename it to {PII_KEY_ENV} (personal data is now "
            "masked with a keyed HMAC, so the tokens differ from the old salted hashes)",
            PiiKeyWarning,
            stacklevel=2,
        )
    if profile() == LOCAL_PROFILE:
        if variable is None:
            warnings.warn(
                f"PLATFORM_PROFILE=local and {PII_KEY_ENV} is not set: personal data is masked with the "
                "DEVELOPMENT key, which anyone can use to reverse the tokens; set a secret "
                f"{PII_KEY_ENV} for any data that is not synthetic",
                PiiKeyWarning,
                stacklevel=2,
            )
        return PiiKeySetting(variable)
    key = config.get(variable) or "" if variable else ""
    problem = (
        "is not set" if not key
        else "is the development key" if key == DEVELOPMENT_PII_KEY
        else f"is shorter than {MIN_PII_KEY_CHARS} characters" if len(key) < MIN_PII_KEY_CHARS
        else None
    )
    if problem:
        raise ConfigurationError(
            f"PLATFORM_PROFILE={profile()} needs a secret key for masking personal data: "
            f"{variable or PII_KEY_ENV} {problem}. "
            f"Set {PII_KEY_ENV} (for example from `python -c \"import secrets; print(secrets.token_hex(32))\"`, "
            f"kept in a secret store), or run with PLATFORM_PROFILE={LOCAL_PROFILE} on synthetic data."
        )
    return PiiKeySetting(variable)


def prepare_dagster_home() -> Path:
    """DAGSTER_HOME as the platform's commands use it: ``<state root>/dagster_home`` when unset, and, in the local
    profile, with the project's ``dagster.yaml`` (run queue, run monitoring, the warehouse pool) copied there when
    it has none, as ``make`` does: a command run by hand gets the same instance as ``make materialize``.

    The prod profile's instance file (PostgreSQL, ``deploy/dagster/dagster.prod.yaml``) is the operator's: it is
    never written here.
    """
    import shutil

    home = config.get_path("DAGSTER_HOME") or paths().dagster_home
    config.export("DAGSTER_HOME", str(home))
    if config.profile() != config.PROD_PROFILE:
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists():
            shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home
