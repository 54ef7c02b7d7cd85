"""Production on Kubernetes: the pods Dagster would create, and every manifest, checked as the API server would.

Run and step Jobs are built by dagster-k8s itself (``K8sRunLauncher.launch_run`` with a recording
batch API, and what ``K8sStepHandler.launch_step`` calls) from deploy/dagster/dagster.prod.yaml and
from deploy/dagster/values.yaml as Dagster's Helm chart renders it. Each pod must carry every
``prod`` setting of ``platform_assets.config`` (secrets by name from the Secret, never a value),
mount the shared volume at PLATFORM_SHARED_STORE and run the user-code image. Those Jobs and every
manifest under deploy/k8s (the SeldonDeployment has its own tests) are validated strictly against
the kubernetes client's models: unknown fields, wrong types, missing required fields and mounts of
undeclared volumes are refused.
"""

import copy
import re
import uuid
from pathlib import Path

import kubernetes
import pytest
import yaml
from dagster import instance_for_test
from dagster._config import process_config, validate_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteStepArgs
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_k8s_job_name
from dagster_postgres.utils import pg_config
from kubernetes.client import ApiClient

from platform_assets import config
from tests.k8s_models import k8s_problems, manifest_problems, pod_spec

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGSTER_DIR, K8S_DIR = PROJECT_ROOT / "deploy" / "dagster", PROJECT_ROOT / "deploy" / "k8s"
VALUES = yaml.safe_load((DAGSTER_DIR / "values.yaml").read_text())
SECRET, SHARED_CLAIM, IMAGE = "platform-secrets", "platform-shared", "registry.local/platform-assets:latest"
RELEASE = NAMESPACE = "dagster"  # helm upgrade --install dagster dagster/dagster --namespace dagster
FIXED = {"PLATFORM_PROFILE": "prod", "PLATFORM_DEPLOY_TARGET": "kubernetes", "PLATFORM_RUN_EXECUTOR": "k8s_job"}
MANIFESTS = sorted(p.name for p in K8S_DIR.glob("*.yaml") if not p.name.startswith("seldondeployment"))

# The keys of Dagster's chart (helm/dagster/schema, Dagster 1.13) in the sections these values set. The
# chart ignores a key it does not know, so a misspelt one would be lost without a word. A set lists
# keys whose values are not looked into; ``None`` takes anything; a list holds the schema of its items.
POD = {"env", "envConfigMaps", "envSecrets", "volumes", "volumeMounts", "labels", "annotations", "nodeSelector",
       "affinity", "tolerations", "podSecurityContext", "securityContext", "resources", "livenessProbe",
       "readinessProbe", "startupProbe", "schedulerName"}
CHART_KEYS = {
    **dict.fromkeys(["dagsterWebserver", "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq",
                     "redis", "flower", "ingress", "imagePullSecrets", "computeLogManager", "scheduler", "pythonLogs",
                     "busybox", "migrate", "serviceAccount", "retention", "additionalInstanceConfig"]),
    "global": {"postgresqlSecretName", "dagsterHome", "serviceAccountName", "celeryConfigSecretName"},
    "postgresql": {"image", "enabled", "postgresqlHost", "postgresqlUsername", "postgresqlPassword",
                   "postgresqlDatabase", "postgresqlParams", "postgresqlScheme", "service"},
    "dagster-user-deployments": {"enabled": None, "enableSubchart": None, "imagePullSecrets": None, "deployments": [
        POD | {"name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns", "port",
               "deploymentNamespace", "initContainers", "sidecarContainers", "deploymentStrategy"}]},
    "runLauncher": {"type": None, "config": {"k8sRunLauncher": {
        **dict.fromkeys(["image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
                         "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
                         "failPodOnRunFailure", "resources", "schedulerName", "securityContext"]),
        "runK8sConfig": {"containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig",
                         "jobMetadata"}}}},
    "dagsterDaemon": {**dict.fromkeys(POD | {"enabled", "image", "heartbeatTolerance", "deploymentLabels", "runRetries",
                                             "sensors", "schedules", "initContainerResources"}),
                      "runCoordinator": {"enabled": None, "type": None, "config": {"queuedRunCoordinator": {
                          "maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds", "dequeueNumWorkers",
                          "dequeueUseThreads", "blockOpConcurrencyLimitedRuns"}}},
                      "runMonitoring": {"enabled", "startTimeoutSeconds", "cancelTimeoutSeconds",
                                        "maxResumeRunAttempts", "pollIntervalSeconds", "freeSlotsAfterRunEndSeconds"}},
    "concurrency": {"enabled": None, "pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
                    "runs": {"maxConcurrentRuns", "tagConcurrencyLimits"}},
    "telemetry": {"enabled"},
}


def unknown_chart_keys(values, schema, path: str = "") -> list[str]:
    """The keys of ``values`` that ``schema`` (a part of CHART_KEYS) does not have, by path."""
    if schema is None or not isinstance(values, (dict, list)):
        return []
    if isinstance(schema, list):
        return [p for i, item in enumerate(values) for p in unknown_chart_keys(item, schema[0], f"{path}[{i}]")]
    return [f"{path}.{key}".lstrip(".") for key in values if key not in schema] + [
        p for key, value in values.items() if isinstance(schema, dict) and key in schema
        for p in unknown_chart_keys(value, schema[key], f"{path}.{key}".lstrip("."))]


def settings_problems(container: dict) -> list[str]:
    """Prod settings the container lacks, secrets not taken by name from the Secret, wrong fixed values."""
    env, problems = container.get("env") or [], []
    for setting in config.SETTINGS:
        entries = [e for e in env if e["name"] == setting.name]
        problems += [f"{setting.name} is not set"] if setting.prod and not entries else []
        for entry in entries if setting.secret else []:
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
            if entry.get("value") is not None:
                problems.append(f"{setting.name} is a secret given as a literal value")
            elif (ref.get("name"), ref.get("key")) != (SECRET, setting.name):
                problems.append(f"{setting.name} does not come from the Secret {SECRET}, key {setting.name}")
    values = {e["name"]: e.get("value") for e in env}
    return problems + [f"{name} is not {value!r}" for name, value in FIXED.items() if values.get(name) != value]


# -- the pods, as dagster-k8s builds them

def snake(key: str) -> str:
    """``volumeMounts`` -> ``volume_mounts``: the chart's keys as Dagster's config names them."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def chart_launcher_config(values: dict) -> dict:
    """The K8sRunLauncher config the chart writes into dagster.yaml (template dagsterYaml.runLauncher.k8s)."""
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    postgres_secret_name = values["global"]["postgresqlSecretName"]  # the chart's: DAGSTER_PG_PASSWORD
    launcher = {"load_incluster_config": k8s.get("loadInclusterConfig", True), "job_namespace": NAMESPACE,
                "image_pull_policy": k8s["imagePullPolicy"], "service_account_name": RELEASE,
                "dagster_home": "/opt/dagster/dagster_home", "instance_config_map": f"{RELEASE}-instance",
                "postgres_password_secret": postgres_secret_name,
                "env_secrets": [s["name"] for s in k8s.get("envSecrets", [])], "env_vars": k8s.get("envVars", []),
                "run_k8s_config": {snake(key): value for key, value in k8s.get("runK8sConfig", {}).items()}}
    launcher.update({snake(key): k8s[key] for key in ("volumeMounts", "volumes", "labels", "resources",
                                                      "securityContext") if key in k8s})
    return launcher


def chart_container_context(deployment: dict) -> dict | None:
    """What the chart's code server sends with each run (template dagsterUserDeployments.k8sContainerContext)."""
    if not deployment.get("includeConfigInLaunchedRuns", {"enabled": True})["enabled"]:
        return None
    k8s = {"image_pull_policy": deployment["image"]["pullPolicy"], "namespace": NAMESPACE,
           "env_config_maps": [f"{RELEASE}-{deployment['name']}-user-env"],
           "service_account_name": f"{RELEASE}-user-deployments"}
    k8s.update({snake(key): deployment[key] for key in ("volumeMounts", "volumes", "labels", "resources", "env")
                if deployment.get(key)})
    if deployment.get("envSecrets"):
        k8s["env_secrets"] = [secret["name"] for secret in deployment["envSecrets"]]
    return {"k8s": k8s}


class RecordingBatchApi:
    """The batch API the launcher talks to: keeps each Job it is asked to create."""

    def __init__(self):
        self.jobs = []

    def create_namespaced_job(self, body, namespace, **_):
        self.jobs.append(body)
        return body


def build_pods(launcher_config: dict, container_context: dict | None, image: str) -> dict[str, dict]:
    """The run Job (``launch_run``) and a step Job (as ``K8sStepHandler.launch_step`` builds it), as sent."""
    processed = process_config(DagsterK8sJobConfig.config_type_run_launcher(), launcher_config)
    assert processed.success, processed.errors
    api = RecordingBatchApi()
    launcher = K8sRunLauncher(**processed.value, k8s_client_batch_api=api)
    origin = JobPythonOrigin("__ASSET_JOB", RepositoryPythonOrigin(
        "/usr/local/bin/python", ModuleCodePointer("platform_assets.definitions", "defs", "/app"),
        container_image=image, container_context=container_context))
    with instance_for_test() as instance:
        launcher.register_instance(instance)
        run = instance.add_run(DagsterRun("__ASSET_JOB", run_id=str(uuid.uuid4()), job_code_origin=origin))
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        step_key = "loan_default__model"
        context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False).merge(K8sContainerContext())
        job_config = context.get_k8s_job_config(None, launcher)
        job_config = job_config if job_config.job_image else job_config.with_image(image)
        step_args = ExecuteStepArgs(origin, run.run_id, [step_key], instance_ref=instance.get_ref())
        job_name = f"dagster-step-{get_k8s_job_name(run.run_id, step_key)}"
        step = construct_dagster_k8s_job(
            job_config, step_args.get_command_args(skip_serialized_namedtuple=True), job_name, pod_name=job_name,
            component="step_worker", user_defined_k8s_config=context.run_k8s_config,
            env_vars=[*step_args.get_command_env(), {"name": "DAGSTER_RUN_STEP_KEY", "value": step_key}])
    (run_job,) = api.jobs
    return {name: ApiClient().sanitize_for_serialization(job) for name, job in [("run", run_job), ("step", step)]}


@pytest.fixture(scope="module")
def pods() -> dict[str, dict]:
    """Run and step Jobs from the Helm values and from dagster.prod.yaml, keyed ``<source>/<run|step>``."""
    patch = pytest.MonkeyPatch()
    patch.setattr(kubernetes.config, "load_incluster_config", lambda: None)  # no cluster here
    patch.setenv("DAGSTER_K8S_NAMESPACE", NAMESPACE)
    try:
        (deployment,) = VALUES["dagster-user-deployments"]["deployments"]
        image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
        prod = yaml.safe_load((DAGSTER_DIR / "dagster.prod.yaml").read_text())["run_launcher"]["config"]
        built = {"helm": build_pods(chart_launcher_config(VALUES), chart_container_context(deployment), image),
                 "prod": build_pods(prod, None, IMAGE)}
    finally:
        patch.undo()
    return {f"{source}/{kind}": job for source, jobs in built.items() for kind, job in jobs.items()}


@pytest.mark.parametrize("which", ["helm/run", "helm/step", "prod/run", "prod/step"])
def test_run_and_step_pods_carry_the_settings_the_shared_volume_and_the_user_code_image(pods, which):
    job = pods[which]
    assert manifest_problems(job) == []
    spec = pod_spec(job)
    (container,) = spec["containers"]
    assert settings_problems(container) == []
    assert container["image"] == IMAGE
    shared = next(e["value"] for e in container["env"] if e["name"] == "PLATFORM_SHARED_STORE")
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == shared]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == SHARED_CLAIM
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"]["memory"] == "8Gi"  # the run pods' own size, not the code server's


@pytest.mark.parametrize("name", MANIFESTS)
def test_every_manifest_is_valid_kubernetes(name):
    documents = [d for d in yaml.safe_load_all((K8S_DIR / name).read_text()) if d]
    assert documents and all(manifest_problems(d) == [] for d in documents), \
        [manifest_problems(d) for d in documents]
    for document in documents:
        for container in pod_spec(document)["containers"] if "template" in document["spec"] else []:
            literal = [e["name"] for e in container.get("env", []) if "valueFrom" not in e]
            assert not [n for n in literal if n in config.BY_NAME and config.BY_NAME[n].secret], name


def test_the_shared_claim_is_read_write_many_and_feast_serves_from_the_user_code_image():
    (claim,) = yaml.safe_load_all((K8S_DIR / "platform-shared.yaml").read_text())
    assert claim["metadata"]["name"] == SHARED_CLAIM and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    service, deployment = yaml.safe_load_all((K8S_DIR / "feast-feature-server.yaml").read_text())
    (container,) = pod_spec(deployment)["containers"]
    assert container["image"] == IMAGE and container["command"][:1] == ["feast"] and "serve" in container["command"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert refs == {n: {"name": SECRET, "key": n} for n in ("FEAST_REGISTRY_URL", "FEAST_REDIS_CONNECTION_STRING")}
    assert any(e["value"].endswith("feature_store.prod.yaml") for e in container["env"] if "value" in e)


def test_dagster_prod_yaml_is_a_valid_instance_with_postgres_and_a_warehouse_pool_of_many():
    instance, _ = dagster_instance_config(str(DAGSTER_DIR), "dagster.prod.yaml")
    storage = instance["storage"]["postgres"]
    assert storage == {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}
    assert validate_config(pg_config(), storage).success  # dagster-postgres's own schema of that section
    assert instance["concurrency"]["pools"]["default_limit"] > 1
    assert instance["run_monitoring"]["enabled"] and instance["run_coordinator"]["class"] == "QueuedRunCoordinator"


def test_the_helm_values_use_the_charts_keys_and_external_postgres():
    assert unknown_chart_keys(VALUES, CHART_KEYS) == []
    misspelt = copy.deepcopy(VALUES)
    misspelt["concurrency"]["pools"]["defaultLimt"] = misspelt["concurrency"]["pools"].pop("defaultLimit")
    assert unknown_chart_keys(misspelt, CHART_KEYS) == ["concurrency.pools.defaultLimt"]
    assert VALUES["postgresql"]["enabled"] is False and VALUES["generatePostgresqlPasswordSecret"] is False
    assert {"postgresqlPassword"}.isdisjoint(VALUES["postgresql"])  # the password is in its own Secret
    assert VALUES["concurrency"]["enabled"] and VALUES["concurrency"]["pools"]["defaultLimit"] > 1
    daemon = VALUES["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator" and daemon["runMonitoring"]["enabled"]
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    (deployment,) = VALUES["dagster-user-deployments"]["deployments"]
    for key, model in [("env", "V1EnvVar"), ("volumes", "V1Volume"), ("volumeMounts", "V1VolumeMount")]:
        assert k8s_problems(deployment[key], f"list[{model}]", key) == []
    assert settings_problems({"env": deployment["env"]}) == []
    run_k8s = VALUES["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    assert k8s_problems({"name": "dagster", **run_k8s["containerConfig"]}, "V1Container") == []
    assert k8s_problems({"containers": [], **run_k8s["podSpecConfig"]}, "V1PodSpec") == []


# -- the checks above fail on what they are meant to catch

def _feast_deployment() -> dict:
    return copy.deepcopy(list(yaml.safe_load_all((K8S_DIR / "feast-feature-server.yaml").read_text()))[1])


@pytest.mark.parametrize("change, message", [
    (lambda d: pod_spec(d)["containers"][0].update(readinesProbe={}),
     "spec.template.spec.containers[0]: unknown field 'readinesProbe' in V1Container"),
    (lambda d: d["spec"].update(replicas="two"), "spec.replicas: 'two' is not of type int"),
    (lambda d: pod_spec(d)["containers"][0].pop("name"),
     "spec.template.spec.containers[0]: required field 'name' of V1Container is missing"),
    (lambda d: pod_spec(d)["containers"][0].update(volumeMounts=[{"name": "gone", "mountPath": "/x"}]),
     "container feature-server: mounts undeclared volume 'gone'"),
    (lambda d: d["spec"]["selector"]["matchLabels"].update(app="other"), "does not match the pod labels"),
], ids=["unknown field", "wrong type", "missing required", "undeclared volume", "selector"])
def test_a_planted_fault_in_a_manifest_is_refused(change, message):
    deployment = _feast_deployment()
    change(deployment)
    assert any(message in problem for problem in manifest_problems(deployment)), manifest_problems(deployment)


def test_a_missing_or_literal_secret_and_a_wrong_profile_are_refused(pods):
    container = copy.deepcopy(pod_spec(pods["helm/run"])["containers"][0])
    env = container["env"]
    env[:] = [e for e in env if e["name"] != "PII_HMAC_KEY"]
    next(e for e in env if e["name"] == "MLFLOW_TRACKING_URI").update(value="postgresql://x", valueFrom=None)
    next(e for e in env if e["name"] == "PLATFORM_PROFILE").update(value="local")
    assert settings_problems(container) == ["MLFLOW_TRACKING_URI is a secret given as a literal value",
                                            "PII_HMAC_KEY is not set", "PLATFORM_PROFILE is not 'prod'"]
