"""SeldonDeployment manifests validate against Seldon Core's CRD; the API calls create or patch."""

from pathlib import Path

import jsonschema
import pytest
import yaml

from platform_assets.deploy.kubernetes import apply_seldon_deployment
from platform_assets.deploy.manifests import render_seldon_deployment

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CRD = PROJECT_ROOT.parent / "shared" / "k8s-schemas" / "seldondeployments.machinelearning.seldon.io.v1.crd.yaml"
ARGS = dict(name="loan-default", namespace="ml", use_case="loan_default", image="registry.local/loan-default-server:1",
            model_version="4", model_uri="models:/loan-default/4")
CANARY = {"model_version": "5", "model_uri": "models:/loan-default/5", "traffic": 10}
TARGET = dict(group="machinelearning.seldon.io", version="v1", namespace="ml", plural="seldondeployments")


@pytest.fixture(scope="module")
def schema():
    if not CRD.exists():
        pytest.skip(f"Seldon Core CRD schema not found at {CRD} (../shared is absent)")
    return yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _env(predictor):
    container = predictor["componentSpecs"][0]["spec"]["containers"][0]
    return {item["name"]: item["value"] for item in container["env"]}


def test_manifest_validates_against_the_crd(schema):
    manifest = render_seldon_deployment(**ARGS, replicas=2)
    jsonschema.validate(manifest, schema)
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


def test_canary_splits_traffic_and_validates(schema):
    manifest = render_seldon_deployment(**ARGS, canary=CANARY)
    jsonschema.validate(manifest, schema)
    main, canary = manifest["spec"]["predictors"]
    assert (main["traffic"], canary["traffic"]) == (90, 10)
    assert sum(p["traffic"] for p in manifest["spec"]["predictors"]) == 100
    assert canary["name"] == "canary" and canary["labels"]["model-version"] == "5"
    assert (_env(main)["MODEL_VERSION"], _env(canary)["MODEL_VERSION"]) == ("4", "5")
    assert "models:/loan-default/5" in canary["componentSpecs"][0]["spec"]["initContainers"][0]["command"]


@pytest.mark.parametrize("traffic", [0, 100, 150])
def test_a_canary_needs_a_real_split(traffic):
    with pytest.raises(ValueError, match="between 1 and 99"):
        render_seldon_deployment(**ARGS, canary={**CANARY, "traffic": traffic})


def test_values_cannot_inject_yaml(schema):
    manifest = render_seldon_deployment(**{**ARGS, "model_version": "4\nkind: Pod", "image": "x: {y}"})
    jsonschema.validate(manifest, schema)
    assert manifest["kind"] == "SeldonDeployment"
    assert _env(manifest["spec"]["predictors"][0])["MODEL_VERSION"] == "4\nkind: Pod"


def test_a_broken_manifest_is_rejected(schema):
    manifest = render_seldon_deployment(**ARGS)
    manifest["spec"]["predictors"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, schema)


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
