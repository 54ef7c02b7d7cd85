"""The Dagster webserver serves the whole graph: every asset and check, with its group."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from platform_assets.deploy.serving import free_port
from tests.conftest import PROJECT_ROOT

QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    description
    assetChecksOrError { __typename ... on AssetChecks { checks { name } } }
  }
}
"""


@pytest.fixture
def webserver(_isolated_state):
    port = free_port()
    (_isolated_state / "dagster_home" / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    webserver = Path(sys.executable).parent / "dagster-webserver"
    process = subprocess.Popen(
        [str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _asset_nodes(url: str, timeout_s: float = 120.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            body = requests.post(f"{url}/graphql", json={"query": QUERY}, timeout=10).json()
            nodes = body.get("data", {}).get("assetNodes") or []
            if len(nodes) >= 13:
                return nodes
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError(f"webserver at {url} did not serve the asset graph within {timeout_s} s")


def test_graphql_lists_every_asset_and_check_with_its_group(webserver):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in _asset_nodes(webserver)}
    groups = {key: node["groupName"] for key, node in nodes.items()}
    # one group per use case, holding every one of its assets, whatever its stage
    of_use_case = {key for key in nodes if key.startswith("loan_default/")}
    for key in ("raw/applications", "validated/applications", "quarantine/applications", "features/feature_store",
                "features/fct_applicant_history", "train/model", "evaluate/eval_report", "deploy/deployment",
                "monitor/inference_log", "monitor/drift_report"):
        assert "loan_default/" + key in of_use_case
    assert {groups[key] for key in of_use_case} == {"loan_default"}
    checks = {
        f"{key}:{c['name']}"
        for key, node in nodes.items()
        if node["assetChecksOrError"]["__typename"] == "AssetChecks"
        for c in node["assetChecksOrError"]["checks"]
    }
    from platform_assets.definitions import defs

    assert checks == {k.to_user_string() for k in defs.resolve_asset_graph().asset_check_keys}
    assert "loan_default/evaluate/eval_report:eval_gate_passed" in checks
    assert "loan_default/validated/applications:quarantine_rate_under_threshold" in checks
    assert all(node["description"] for node in nodes.values())
