"""Resources shared by the stages: state root, warehouse, feature store, MLflow.

Values come from environment variables (``dg.EnvVar``) where one is set and
from the embedded defaults under the state root otherwise; see
:mod:`platform_assets.settings`. Heavy libraries (feast, mlflow) are imported
inside methods so that loading the code location stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from platform_assets import settings
# Re-exported: stages import every resource from here.
from platform_assets.warehouse import Warehouse  # noqa: F401


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
    """The MLflow tracking backend and registry (each use case's experiment and model are its ``model_name``)."""

    tracking_uri: str
    artifact_root: str = ""

    def client(self) -> "mlflow.MlflowClient":  # noqa: F821
        """Returns an ``MlflowClient`` on the tracking backend."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        return mlflow.MlflowClient(self.tracking_uri)

    def ensure_experiment(self, experiment_name: str) -> str:
        """Creates the experiment with its artifact location if missing; returns its id."""
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        experiment = mlflow.get_experiment_by_name(experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.artifact_root:
            Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
            location = Path(self.artifact_root).resolve().as_uri()
        return mlflow.create_experiment(experiment_name, artifact_location=location)


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
        tracking_uri=config["mlflow_tracking_uri"], artifact_root=config["artifact_root"],
    ).ensure_experiment(config["experiment_name"])
    return MlFlow(init_context)


class ModelServing(dg.ConfigurableResource):
    """The local model server: the serving environment's Python and the address to listen on."""

    serving_python: str = ""
    http_port: int = 9100
    # Loopback by default: the server has no authentication. "0.0.0.0" listens on every interface.
    host: str = "127.0.0.1"
    start_timeout_s: float = 120.0
    # gunicorn worker processes of the model server (threads add latency under the GIL).
    workers: int = 2
    # How long the server waits for the feature server per request before answering 503.
    feature_lookup_timeout_s: float = 2.0

    def python_path(self) -> Path:
        """The serving environment's interpreter (default: ``<project>/.venv-serving/bin/python``)."""
        return Path(self.serving_python or settings.PROJECT_ROOT / ".venv-serving" / "bin" / "python")

    def pid_path(self, paths: settings.UseCasePaths) -> Path:
        """Where a use case's running server is recorded."""
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
    def development(cls) -> "PiiMasking":
        """The built-in development key (synthetic data on one laptop): runs say so."""
        return cls(key=settings.DEVELOPMENT_PII_KEY, development_key=True)

    @classmethod
    def from_environment(cls) -> "PiiMasking":
        """The resource as the environment decides it (:func:`settings.pii_key_setting`).

        The key itself is passed as ``dg.EnvVar``, so it is read at run time and
        never shown in the UI's resource config.

        Raises:
            settings.ConfigurationError: Outside the local profile without a usable key.
        """
        setting = settings.pii_key_setting()
        if setting.variable is None:
            return cls.development()
        return cls(key=dg.EnvVar(setting.variable), development_key=False)
