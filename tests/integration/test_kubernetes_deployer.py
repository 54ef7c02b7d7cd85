"""The Kubernetes deployer through the real kubernetes client, against an API server that stores SeldonDeployments.

The stand-in API server speaks the Kubernetes REST API for one custom resource
(create, get, merge-patch), validates every manifest it is sent against the
project's schema and, where ``../shared`` has it, Seldon Core's own CRD schema
(answering 422 as an API server does), and plays the operator: a deployment becomes ``Available`` after a few
polls, or ``Failed`` for a planted version.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import pytest
import yaml

from platform_assets.declarations import use_case_to_dict
from platform_assets.deploy.manifests import seldon_deployment_problems
from platform_assets.deploy.release import NothingApplied, ReleaseError, ReleaseRequest
from platform_assets.resources import KubernetesDeployer
from tests.conftest import SELDON_CRD as CRD
from tests.conftest import loan, seldon_crd_schema

PREFIX = "/apis/machinelearning.seldon.io/v1/namespaces/ml/seldondeployments"
FAILING_VERSION = "13"


class FakeApiServer:
    def __init__(self):
        self.objects, self.gets, self.requests = {}, {}, []
        # Built once: jsonschema.validate() would check the 2.4 MB schema itself on every call.
        self.crd = jsonschema.Draft202012Validator(seldon_crd_schema()) if CRD.exists() else None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

            def _invalid(self, manifest):
                problems = seldon_deployment_problems(manifest)
                if server.crd is not None and not problems:
                    try:
                        server.crd.validate(manifest)
                    except jsonschema.ValidationError as exc:
                        problems = [exc.message]
                return {"kind": "Status", "code": 422, "message": "; ".join(problems)} if problems else None

            def do_POST(self):
                manifest = self._body()
                server.requests.append(("POST", manifest))
                name = manifest["metadata"]["name"]
                if self.path != PREFIX:
                    return self._send(404, {"kind": "Status", "code": 404})
                if (problem := self._invalid(manifest)):
                    return self._send(422, problem)
                if name in server.objects:
                    return self._send(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
                server.objects[name], server.gets[name] = manifest, 0
                self._send(201, manifest)

            def do_PATCH(self):
                patch = self._body()
                server.requests.append(("PATCH", patch, self.headers.get("Content-Type")))
                name = self.path.rsplit("/", 1)[1]
                if name not in server.objects:
                    return self._send(404, {"kind": "Status", "code": 404})
                merged = {**server.objects[name], **patch, "status": {}}  # a merge patch replaces lists whole
                if (problem := self._invalid({k: v for k, v in merged.items() if k != "status"})):
                    return self._send(422, problem)
                server.objects[name], server.gets[name] = merged, 0
                self._send(200, merged)

            def do_GET(self):
                name = self.path.split("?")[0].rsplit("/", 1)[1]
                if not self.path.startswith(PREFIX + "/") or name not in server.objects:
                    return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                obj = server.objects[name]
                server.gets[name] += 1
                versions = {p.get("labels", {}).get("model-version") for p in obj["spec"]["predictors"]}
                if FAILING_VERSION in versions:
                    obj["status"] = {"state": "Failed", "description": "container classifier: CrashLoopBackOff"}
                elif server.gets[name] >= 3:  # the operator rolled the pods out
                    obj["status"] = {"state": "Available"}
                else:
                    obj["status"] = {"state": "Creating"}
                self._send(200, obj)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    api = FakeApiServer()
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": api.url}}],
        "users": [{"name": "test", "user": {"token": "t"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "ml"}}]}))
    deployer = KubernetesDeployer(namespace="ml", image="registry.local/server:1", kubeconfig=str(kubeconfig),
                                  poll_s=0.01, available_timeout_s=5)
    yield api, deployer
    api.http.shutdown()


def _request(version, role="stable"):
    return ReleaseRequest(use_case=loan(), declaration=use_case_to_dict(loan()), version=version, bundle_dir=None,
                          smoke_rows=None, serving_dir=None, port_offset=0, feature_repo=None, state_root=None,
                          inference_log_dir=None, role=role, canary_weight=0.1)


def _predictors(api):
    return {p["name"]: (p["labels"]["model-version"], p.get("traffic"), p.get("shadow", False))
            for p in api.objects["loan-default"]["spec"]["predictors"]}


def test_releases_create_then_patch_and_wait_until_seldon_reports_available(cluster):
    api, deployer = cluster
    first = deployer.release(_request("4"), print)
    assert first["state"] == "Available" and first["model_version"] == "4"
    assert first["url"] == "http://loan-default-main.ml.svc.cluster.local:8000"
    assert [r[0] for r in api.requests] == ["POST"] and _predictors(api) == {"main": ("4", 100, False)}
    assert api.gets["loan-default"] >= 3  # it polled until the operator said Available
    second = deployer.release(_request("5"), print)
    assert [r[0] for r in api.requests] == ["POST", "POST", "PATCH"]  # 409 on create, then a merge patch
    assert api.requests[-1][2] == "application/merge-patch+json"
    assert second["history"] == [{"version": "4"}] and _predictors(api) == {"main": ("5", 100, False)}
    labels = api.objects["loan-default"]["metadata"]["labels"]
    assert labels["model-name"] == "loan-default" and labels["model-version"] == "5"


def test_a_canary_and_a_shadow_are_predictors_beside_the_main_one(cluster):
    api, deployer = cluster
    deployer.release(_request("6", role="canary"), print)
    assert _predictors(api) == {"main": ("5", 90, False), "canary": ("6", 10, False)}
    deployer.release(_request("7", role="shadow"), print)
    assert _predictors(api) == {"main": ("5", 100, False), "shadow": ("7", 0, True)}


def test_a_rollback_returns_the_previous_version_to_the_main_predictor(cluster):
    api, deployer = cluster
    assert deployer.previous_version(_request("5")) == "4"
    back = deployer.rollback(_request("5"), print)
    assert back["model_version"] == "4" and _predictors(api) == {"main": ("4", 100, False)}
    with pytest.raises(ReleaseError, match="nothing to roll back to"):
        deployer.previous_version(_request("4"))


def test_a_deployment_seldon_reports_failed_fails_the_release_with_its_reason(cluster):
    api, deployer = cluster
    with pytest.raises(ReleaseError, match="failed: container classifier: CrashLoopBackOff; version 4 serves again"):
        deployer.release(_request(FAILING_VERSION), print)
    assert _predictors(api) == {"main": ("4", 100, False)}


def test_a_manifest_kubernetes_would_refuse_never_reaches_the_cluster(cluster):
    api, deployer = cluster
    before, sent = copy.deepcopy(api.objects["loan-default"]), len(api.requests)
    broken = KubernetesDeployer(namespace="ml", image="registry.local/server 1",  # a space in the image
                                kubeconfig=deployer.kubeconfig, poll_s=0.01, available_timeout_s=5)
    with pytest.raises(NothingApplied, match=r"cannot be applied: spec\.predictors\[0\]\.componentSpecs\[0\]\.spec"
                                             r"\.containers\[0\]\.image: .*\(nothing was applied\)"):
        broken.release(_request("8"), print)
    assert len(api.requests) == sent  # no create, no patch
    assert api.objects["loan-default"]["spec"] == before["spec"]  # version 4 still serves, untouched
