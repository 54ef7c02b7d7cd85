"""SeldonDeployment manifests: the project's schema (deploy/k8s) and Seldon's rules always; Seldon Core's
own CRD as well where ``../shared`` has it; the API calls create or patch."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from platform_assets.deploy.kubernetes import apply_seldon_deployment
from platform_assets.deploy.manifests import (
    ManifestError, render_seldon_deployment, seldon_deployment_problems, validate_seldon_deployment)
from tests.conftest import SELDON_CRD as CRD
from tests.conftest import seldon_crd_schema

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARGS = dict(name="loan-default", namespace="ml", use_case="loan_default", image="registry.local/loan-default-server:1",
            model_version="4", model_uri="models:/loan-default/4")
CANARY = {"model_version": "5", "model_uri": "models:/loan-default/5", "traffic": 10}
SHADOW = {"model_version": "6", "model_uri": "models:/loan-default/6"}
TARGET = dict(group="machinelearning.seldon.io", version="v1", namespace="ml", plural="seldondeployments")


@pytest.fixture(scope="module")
def seldon_crd():
    """Seldon Core v1.17.1's CRD schema: a second opinion, only where ../shared is beside the project."""
    if not CRD.exists():
        pytest.skip(f"Seldon Core's own CRD not found at {CRD} (../shared is absent); "
                    "the project's schema checks every manifest without it")
    return jsonschema.Draft202012Validator(seldon_crd_schema())  # once: validate() re-checks the schema per call


def _env(predictor):
    container = predictor["componentSpecs"][0]["spec"]["containers"][0]
    return {item["name"]: item["value"] for item in container["env"]}


def _container(manifest, predictor=0):
    return manifest["spec"]["predictors"][predictor]["componentSpecs"][0]["spec"]["containers"][0]


def test_manifest_is_valid_and_filled():
    manifest = render_seldon_deployment(**ARGS, replicas=2)
    assert seldon_deployment_problems(manifest) == []
    assert manifest["apiVersion"] == "machinelearning.seldon.io/v1"
    assert manifest["metadata"] == {
        "name": "loan-default", "namespace": "ml",
        "labels": {"app.kubernetes.io/name": "loan-default", "app.kubernetes.io/part-of": "ml-platform",
                   "model-name": "loan-default", "model-version": "4"},
        "annotations": {"ml-platform/previous-versions": "[]"},
    }
    (main,) = manifest["spec"]["predictors"]
    assert (main["name"], main["replicas"], main["traffic"]) == ("main", 2, 100)
    assert _env(main)["MODEL_VERSION"] == "4"
    spec = main["componentSpecs"][0]["spec"]
    assert spec["containers"][0]["image"] == ARGS["image"]
    assert "models:/loan-default/4" in spec["initContainers"][0]["command"]
    assert spec["initContainers"][0]["image"] == "registry.local/platform-assets:latest"
    assert "$" not in yaml.safe_dump(manifest)  # every placeholder filled


def test_canary_splits_traffic_and_is_valid():
    manifest = render_seldon_deployment(**ARGS, canary=CANARY)
    assert seldon_deployment_problems(manifest) == []
    main, canary = manifest["spec"]["predictors"]
    assert (main["traffic"], canary["traffic"]) == (90, 10)
    assert canary["name"] == "canary" and canary["labels"]["model-version"] == "5"
    assert (_env(main)["MODEL_VERSION"], _env(canary)["MODEL_VERSION"]) == ("4", "5")
    assert "models:/loan-default/5" in canary["componentSpecs"][0]["spec"]["initContainers"][0]["command"]


def test_shadow_mirrors_and_is_valid():
    manifest = render_seldon_deployment(**ARGS, shadow=SHADOW)
    assert seldon_deployment_problems(manifest) == []
    main, shadow = manifest["spec"]["predictors"]
    assert (main["traffic"], shadow["shadow"], shadow["traffic"]) == (100, True, 0)
    assert _env(shadow)["MODEL_VERSION"] == "6"


@pytest.mark.parametrize("extra", [{}, {"canary": CANARY}, {"shadow": SHADOW}], ids=["main", "canary", "shadow"])
def test_seldon_cores_own_crd_accepts_every_manifest_the_project_renders(seldon_crd, extra):
    seldon_crd.validate(render_seldon_deployment(**ARGS, **extra))


@pytest.mark.parametrize("traffic", [0, 100, 150])
def test_a_canary_needs_a_real_split(traffic):
    with pytest.raises(ValueError, match="between 1 and 99"):
        render_seldon_deployment(**ARGS, canary={**CANARY, "traffic": traffic})


def test_values_cannot_inject_yaml_and_an_invalid_label_is_refused_before_the_cluster():
    # Values are substituted after parsing: this one cannot add a field; it is no valid label value either.
    with pytest.raises(ManifestError, match=r"loan-default cannot be applied: metadata\.labels\.model-version: "):
        render_seldon_deployment(**{**ARGS, "model_version": "4\nkind: Pod"})
    manifest = render_seldon_deployment(**{**ARGS, "model_uri": "models:/x\nkind: Pod"})
    assert manifest["kind"] == "SeldonDeployment"
    assert _env(manifest["spec"]["predictors"][0])["MODEL_URI"] == "models:/x\nkind: Pod"


@pytest.mark.parametrize("args, where", [
    ({"image": "registry.local/server: 1"}, "spec.predictors[0].componentSpecs[0].spec.containers[0].image"),
    ({"name": "Loan_Default"}, "metadata.name"),
    ({"namespace": "ml.prod"}, "metadata.namespace"),
    ({"model_version": "v" * 64}, "metadata.labels.model-version"),
    ({"replicas": -1}, "spec.predictors[0].replicas"),
])
def test_a_value_kubernetes_would_refuse_fails_rendering_with_its_path(args, where):
    with pytest.raises(ManifestError) as caught:
        render_seldon_deployment(**{**ARGS, **args})
    assert f"{where}: " in str(caught.value)


def _planted(change):
    manifest = copy.deepcopy(render_seldon_deployment(**ARGS, canary=CANARY))
    change(manifest)
    return manifest


PLANTED = {
    "replicas not an integer": (lambda m: m["spec"]["predictors"][0].update(replicas="two"),
                                "spec.predictors[0].replicas: 'two' is not of type 'integer'"),
    "misspelt probe (the API server would prune it)": (
        lambda m: _container(m).update(readinesProbe=_container(m).pop("readinessProbe")),
        "spec.predictors[0].componentSpecs[0].spec.containers[0]: Additional properties are not allowed "
        "('readinesProbe' was unexpected)"),
    "memory written as 2 GB": (lambda m: _container(m)["resources"]["limits"].update(memory="2 GB"),
                                             "spec.predictors[0].componentSpecs[0].spec.containers[0].resources."
                                             "limits.memory: '2 GB' does not match"),
    "a probe with two handlers": (lambda m: _container(m)["readinessProbe"].update(tcpSocket={"port": 9000}),
                                  "spec.predictors[0].componentSpecs[0].spec.containers[0].readinessProbe: "),
    "an unknown graph type": (lambda m: m["spec"]["predictors"][0]["graph"].update(type="MODLE"),
                              "spec.predictors[0].graph.type: 'MODLE' is not one of"),
    "traffic short of 100": (lambda m: m["spec"]["predictors"][1].update(traffic=5),
                             "the traffic of the predictors that answer callers sums to 95, not 100"),
    "two predictors of one name": (lambda m: m["spec"]["predictors"][1].update(name="main"),
                                   "predictor name 'main' is used 2 times"),
    "a graph that names no container": (lambda m: m["spec"]["predictors"][1]["graph"].update(name="model"),
                                        "spec.predictors[1].graph: node 'model' names no container"),
    "only shadows": (lambda m: [p.update(shadow=True) for p in m["spec"]["predictors"]],
                     "every predictor is a shadow"),
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_a_planted_bad_manifest_is_refused_with_its_path(name):
    change, message = PLANTED[name]
    manifest = _planted(change)
    assert any(message in problem for problem in seldon_deployment_problems(manifest)), \
        seldon_deployment_problems(manifest)
    with pytest.raises(ManifestError, match="loan-default cannot be applied"):
        validate_seldon_deployment(manifest)


def test_seldon_cores_own_crd_refuses_a_wrong_type_too(seldon_crd):
    with pytest.raises(jsonschema.ValidationError):
        seldon_crd.validate(_planted(PLANTED["replicas not an integer"][0]))


class FakeCustomObjectsApi:
    """Records calls; ``create`` answers 409 (or ``status``) when the object exists."""

    def __init__(self, exists: bool, status: int = 409):
        self.exists, self.status, self.calls = exists, status, []

    def create_namespaced_custom_object(self, **kwargs):
        from kubernetes.client.exceptions import ApiException

        self.calls.append(("create", kwargs))
        if self.exists:
            raise ApiException(status=self.status, reason="AlreadyExists")

    def patch_namespaced_custom_object(self, **kwargs):
        self.calls.append(("patch", kwargs))


def test_apply_creates_a_new_deployment():
    manifest = render_seldon_deployment(**ARGS)
    api = FakeCustomObjectsApi(exists=False)
    assert apply_seldon_deployment(api, manifest) == "created"
    assert api.calls == [("create", {**TARGET, "body": manifest})]


def test_apply_patches_an_existing_deployment_with_the_same_body():
    manifest = render_seldon_deployment(**ARGS, canary=CANARY)
    api = FakeCustomObjectsApi(exists=True)
    assert apply_seldon_deployment(api, manifest) == "updated"
    assert api.calls == [("create", {**TARGET, "body": manifest}),
                         ("patch", {**TARGET, "name": "loan-default", "body": manifest})]


def test_apply_raises_other_api_errors():
    from kubernetes.client.exceptions import ApiException

    api = FakeCustomObjectsApi(exists=True, status=403)
    with pytest.raises(ApiException):
        apply_seldon_deployment(api, render_seldon_deployment(**ARGS))
    assert [call for call, _ in api.calls] == ["create"]
