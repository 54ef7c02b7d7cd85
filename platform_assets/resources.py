"""Resources shared by the stages: state root, warehouse, feature store, MLflow.

Values come from environment variables (``dg.EnvVar``) where one is set and
from the embedded defaults under the state root otherwise; see
:mod:`platform_assets.settings`. Heavy libraries (feast, mlflow) are imported
inside methods so that loading the code location stays fast.
"""

from __future__ import annotations

import abc
from pathlib import Path

import dagster as dg

from platform_assets import config, settings
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
    # The configuration file (default: the repository's feature_store.yaml); prod: feature_store.prod.yaml.
    yaml_file: str = ""

    def store(self) -> "feast.FeatureStore":  # noqa: F821
        """Returns a ``feast.FeatureStore`` for the repository."""
        # The local feature_store.yaml and the feature definitions read PLATFORM_HOME (prod: the shared store).
        if config.profile() == config.LOCAL_PROFILE:
            config.export(settings.STATE_ROOT_ENV, self.state_root)
        from feast import FeatureStore as _FeatureStore

        return _FeatureStore(repo_path=self.repo_path, fs_yaml_file=Path(self.yaml_file) if self.yaml_file else None)


# MLflow 3's experiment kind: its UI opens a model-training experiment on its runs.
EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"


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
        """Creates the experiment with its artifact location if missing; returns its id.

        The experiment is marked as model training (``mlflow.experimentKind``): MLflow 3's UI then opens it on
        its training runs, not on the GenAI pages (traces, assistant) it shows an experiment of unknown kind.
        """
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        experiment = mlflow.get_experiment_by_name(experiment_name)
        if experiment is None:
            location = None
            if self.artifact_root:
                Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
                location = Path(self.artifact_root).resolve().as_uri()
            experiment_id = mlflow.create_experiment(experiment_name, artifact_location=location,
                                                     tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
        else:
            experiment_id = experiment.experiment_id
            if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:  # made by an older version
                mlflow.MlflowClient(self.tracking_uri).set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG,
                                                                         MODEL_TRAINING_KIND)
        return experiment_id


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


class Deployer(dg.ConfigurableResource):
    """Where a use case's model is released: :class:`LocalDeployer` (blue/green behind a router on this
    machine) or :class:`KubernetesDeployer` (a SeldonDeployment), chosen by ``PLATFORM_DEPLOY_TARGET``."""

    @abc.abstractmethod
    def release(self, request: "ReleaseRequest", log) -> dict:  # noqa: F821
        """Releases ``request.version`` in ``request.role``; returns the serving record (``url``, ``model_version``,
        ``history`` ...). Raises ``release.ReleaseError`` when it did not happen (what served before still serves)."""

    @abc.abstractmethod
    def rollback(self, request: "ReleaseRequest", log) -> dict:  # noqa: F821
        """Serves the version that served before again (``request`` names the use case; its version is ignored)."""

    @abc.abstractmethod
    def previous_version(self, request: "ReleaseRequest") -> str:  # noqa: F821
        """The version a rollback returns to."""


class LocalDeployer(Deployer):
    """Model servers on this machine behind each use case's stable endpoint (:mod:`platform_assets.deploy.release`)."""

    serving_python: str = ""
    http_port: int = 9100
    # Loopback by default: the server has no authentication. "0.0.0.0" listens on every interface.
    host: str = "127.0.0.1"
    start_timeout_s: float = 120.0
    # gunicorn worker processes of the model server (threads add latency under the GIL).
    workers: int = 2
    # How long the server waits for the feature server per request before answering 503.
    feature_lookup_timeout_s: float = 2.0
    # Feast feature server worker processes (per version), and the requests a model-server worker
    # of a use case with online features scores at once while it waits on them.
    feature_server_workers: int = 2
    lookup_threads: int = 8
    # Feature-server POSTs at once per model-server worker: the lookups that arrive meanwhile go as
    # one POST for all their entities (0: one POST per request).
    lookups_in_flight: int = 1

    def python_path(self) -> Path:
        """The serving environment's interpreter (default: ``<project>/.venv-serving/bin/python``)."""
        return Path(self.serving_python or settings.PROJECT_ROOT / ".venv-serving" / "bin" / "python")

    def _spec(self, request, version: str, bundle) -> "BackendSpec":  # noqa: F821
        from platform_assets.deploy.release import BackendSpec

        return BackendSpec(
            python=self.python_path(), bundle=Path(bundle), use_case=request.use_case.name,
            declaration=request.declaration, model_name=request.use_case.model_name, version=str(version),
            feature_repo=request.feature_repo, state_root=request.state_root,
            inference_log_dir=request.inference_log_dir, workers=self.workers,
            feature_server_workers=self.feature_server_workers, lookup_threads=self.lookup_threads,
            lookups_in_flight=self.lookups_in_flight, feature_lookup_timeout_s=self.feature_lookup_timeout_s,
            start_timeout_s=self.start_timeout_s)

    def release(self, request, log) -> dict:  # noqa: D102
        from platform_assets.deploy import release

        return release.release(
            self._spec(request, request.version, request.bundle_dir), request.serving_dir, host=self.host,
            port=self.http_port + request.port_offset, role=request.role, canary_weight=request.canary_weight,
            smoke_test=lambda url: release.smoke_test_against_bundle(url, request.bundle_dir, request.smoke_rows,
                                                                     request.version, use_case=request.use_case),
            log=log)

    def previous_version(self, request) -> str:  # noqa: D102
        from platform_assets.deploy import release

        return release.previous_version(request.serving_dir)["version"]

    def rollback(self, request, log) -> dict:  # noqa: D102
        from platform_assets.deploy import release

        previous = release.previous_version(request.serving_dir)
        return release.release(
            self._spec(request, previous["version"], previous["bundle"]), request.serving_dir, host=self.host,
            port=self.http_port + request.port_offset, rollback=True, log=log,
            smoke_test=lambda url: release.smoke_test_against_bundle(url, previous["bundle"], request.smoke_rows,
                                                                     previous["version"], use_case=request.use_case))


class KubernetesDeployer(Deployer):
    """A SeldonDeployment per use case (machinelearning.seldon.io/v1), applied with the kubernetes client.

    The main predictor serves the champion; ``canary`` adds a predictor with a share of
    traffic, ``shadow`` one that gets a copy of it. The asset waits until Seldon reports
    the deployment ``Available`` (else it fails with Seldon's description).
    """

    namespace: str = "ml"
    image: str = "registry.local/platform-model-server:latest"
    fetch_image: str = "registry.local/platform-assets:latest"
    replicas: int = 1
    available_timeout_s: float = 600.0
    poll_s: float = 2.0
    # The predictor's service inside the cluster (Seldon names it <deployment>-<predictor>, REST on 8000).
    service_url: str = "http://{name}-main.{namespace}.svc.cluster.local:8000"
    # Empty: the pod's service account (in the cluster), else this kubeconfig file.
    kubeconfig: str = ""

    def _api(self):
        from kubernetes import client, config

        if self.kubeconfig:
            config.load_kube_config(self.kubeconfig)
        else:
            config.load_incluster_config()
        return client.CustomObjectsApi()

    def _apply(self, request, main: str, previous: list[str], log, **extra) -> dict:
        from platform_assets.deploy import kubernetes, manifests

        from platform_assets.deploy.release import NothingApplied, ReleaseError

        name = request.use_case.model_name
        try:
            manifest = manifests.render_seldon_deployment(
                name=name, namespace=self.namespace, use_case=request.use_case.name, image=self.image,
                model_version=main, model_uri=f"models:/{name}/{main}", replicas=self.replicas,
                fetch_image=self.fetch_image, previous_versions=previous, **extra)
        except ValueError as exc:  # ManifestError, or a canary share out of range
            raise NothingApplied(f"{exc} (nothing was applied)") from None
        api = self._api()
        action = kubernetes.apply_seldon_deployment(api, manifest)
        log(f"SeldonDeployment {self.namespace}/{name} {action}: main {main}"
            + "".join(f", {k} {v['model_version']}" for k, v in extra.items() if v))
        try:
            status = kubernetes.wait_until_available(api, self.namespace, name, self.available_timeout_s, self.poll_s)
        except RuntimeError as exc:
            raise ReleaseError(str(exc)) from None
        return {"url": self.service_url.format(name=name, namespace=self.namespace), "model_name": name,
                "model_version": main, "history": [{"version": v} for v in previous], "state": status.get("state"),
                "stable": {"version": main}, "canary": None, "shadow": None}

    def _current(self, request) -> tuple[str | None, list[str]]:
        from platform_assets.deploy import kubernetes

        return kubernetes.served_versions(self._api(), self.namespace, request.use_case.model_name)

    def release(self, request, log) -> dict:  # noqa: D102
        from platform_assets.deploy.release import NothingApplied, ReleaseError

        main, previous = self._current(request)
        version = str(request.version)
        if request.role == "stable":
            history = [*previous, main] if main and main != version else previous
            try:
                return self._apply(request, version, history, log)
            except NothingApplied:
                raise
            except ReleaseError as exc:
                if not main:
                    raise
                self._apply(request, main, previous, log)  # the version before is what Seldon serves again
                raise ReleaseError(f"{exc}; version {main} serves again") from None
        if not main:
            raise ReleaseError(f"a {request.role} needs a stable version serving first")
        other = {"model_version": version, "model_uri": f"models:/{request.use_case.model_name}/{version}"}
        if request.role == "canary":
            return self._apply(request, main, previous, log, canary={**other, "traffic": round(100 * request.canary_weight)})
        return self._apply(request, main, previous, log, shadow=other)

    def previous_version(self, request) -> str:  # noqa: D102
        from platform_assets.deploy.release import ReleaseError

        main, previous = self._current(request)
        if not previous:
            raise ReleaseError(f"version {main} is the first that served: nothing to roll back to")
        return previous[-1]

    def rollback(self, request, log) -> dict:  # noqa: D102
        _, previous = self._current(request)
        back = self.previous_version(request)
        return self._apply(request, back, previous[:-1], log)


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
