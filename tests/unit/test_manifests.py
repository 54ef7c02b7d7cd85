"""SeldonDeployment manifests validate against Seldon Core's CRD; the API calls create or patch."""

import jsonschema
import pytest
import yaml

from platform_assets.deploy.kubernetes import apply_seldon_deployment
from platform_assets.deploy.manifests import render_seldon_deployment
from tests.conftest import SHARED

CRD = SHARED / "k8s-schemas" / "seldondeployments.machinelearning.seldon.io.v1.crd.yaml"
ARGS = dict(name="loan-default", namespace="ml", image="registry.local/loan-default-server:1",
            model_version="4", model_uri="models:/loan-default/4")


@pytest.fixture(scope="module")
def schema():
    if not CRD.exists():
        pytest.skip(f"Seldon CRD schema not found at {CRD} (../shared is absent)")
    return yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_manifest_validates_against_the_crd(schema):
    manifest = render_seldon_deployment(**ARGS, replicas=2)
    jsonschema.validate(manifest, schema)
    assert manifest["spec"]["predictors"][0]["replicas"] == 2


def test_canary_splits_traffic_and_validates(schema):
    manifest = render_seldon_deployment(**ARGS, canary={"model_version": "5", "model_uri": "models:/loan-default/5",
                                                       "traffic": 10})
    jsonschema.validate(manifest, schema)
    predictors = manifest["spec"]["predictors"]
    assert [p["traffic"] for p in predictors] == [90, 10]
    assert predictors[1]["labels"]["model-version"] == "5"
    fetch = predictors[1]["componentSpecs"][0]["spec"]["initContainers"][0]["command"]
    assert "models:/loan-default/5" in fetch
    assert "models:/loan-default/4" in predictors[0]["componentSpecs"][0]["spec"]["initContainers"][0]["command"]


def test_a_broken_manifest_is_rejected(schema):
    manifest = render_seldon_deployment(**ARGS)
    manifest["spec"]["predictors"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, schema)


class FakeCustomObjectsApi:
    def __init__(self, exists: bool):
        self.exists, self.calls = exists, []

    def create_namespaced_custom_object(self, **kwargs):
        from kubernetes.client.exceptions import ApiException

        self.calls.append(("create", kwargs))
        if self.exists:
            raise ApiException(status=409, reason="AlreadyExists")

    def patch_namespaced_custom_object(self, **kwargs):
        self.calls.append(("patch", kwargs))


def test_apply_creates_then_patches_when_it_exists():
    manifest = render_seldon_deployment(**ARGS)
    new = FakeCustomObjectsApi(exists=False)
    assert apply_seldon_deployment(new, manifest) == "created"
    assert new.calls == [("create", dict(group="machinelearning.seldon.io", version="v1", namespace="ml",
                                         plural="seldondeployments", body=manifest))]
    old = FakeCustomObjectsApi(exists=True)
    assert apply_seldon_deployment(old, manifest) == "updated"
    assert old.calls[1] == ("patch", dict(group="machinelearning.seldon.io", version="v1", namespace="ml",
                                          plural="seldondeployments", name="loan-default", body=manifest))
