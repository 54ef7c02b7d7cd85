"""A model run killed with SIGKILL at registration leaves no orphan once the next model run is done.

One state root and Dagster instance for the module:
1. a driver process materializes the model asset and SIGKILLs itself right
   after MLflow commits the new version (tests/integration/kill_at_registration.py);
2. the model asset runs again here, to success;
then every version carries its tags (or is marked orphaned and undeployable) and
no MLflow run is RUNNING. The repair policy for versions made by the older code
path (registered first, tagged after) is exercised on the same registry.
"""

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from platform_assets import definitions
from platform_assets.defs.deploy.assets import ModelNotApprovedError, approved_champion
from platform_assets.train import registration
from platform_assets.train.registry import CHALLENGER, CHAMPION, GATE_TAG, alias_version
from tests.conftest import PROJECT_ROOT, loan, loan_asset, loan_node
from tests.integration.test_training_gate import write_training_set

NAME = loan().model_name
MODEL_NODE = loan_node("train", "model")
DRIVER = Path(__file__).with_name("kill_at_registration.py")
# One small candidate, a few epochs: the test is about registration, not training.
RUN_CONFIG = {"ops": {MODEL_NODE: {"config": {
    "candidates": [{"hidden": [16], "dropout": 0.0, "learning_rate": 3e-3}], "max_epochs": 4, "patience": 2,
}}}}


def _all_runs(client):
    experiment = client.get_experiment_by_name(NAME).experiment_id
    return client.search_runs([experiment], "", max_results=1000)


@pytest.fixture(scope="module")
def killed_then_rerun(tmp_path_factory):
    """The killed driver's leftovers, then the state after one more successful model run."""
    root = tmp_path_factory.mktemp("kill_state")
    home = root / "dagster_home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLATFORM_HOME", str(root))
        mp.setenv("DAGSTER_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        write_training_set(root)
        driver = subprocess.run(
            [sys.executable, str(DRIVER), str(root), json.dumps(RUN_CONFIG)],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
        )
        assert driver.returncode == -9, driver.stderr[-3000:]
        resources = definitions.embedded_resources(root)
        client = resources["mlflow_registry"].client()
        with dg.DagsterInstance.get() as instance:
            # The fault as it stands after the kill: a version with no alias, a Dagster and an MLflow run still open.
            killed_runs = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.STARTED]
            after_kill = {
                "versions": client.search_model_versions(f"name = '{NAME}'"),
                "running": [r for r in _all_runs(client) if r.info.status == "RUNNING"],
                "dagster_runs": killed_runs,
            }
            result = dg.materialize([loan_asset("train", "model")], resources=resources, instance=instance,
                                    run_config=RUN_CONFIG, raise_on_error=False)
            yield {"registry": resources["mlflow_registry"], "after_kill": after_kill, "result": result}


def test_kill_left_a_version_and_open_runs_behind(killed_then_rerun):
    after = killed_then_rerun["after_kill"]
    assert len(after["versions"]) == 1 and not after["versions"][0].aliases
    assert len(after["dagster_runs"]) == 1
    assert [r.data.tags.get("dagster_run_id") for r in after["running"]] == [after["dagster_runs"][0].run_id]


def test_after_the_next_run_no_version_lacks_tags_and_no_run_is_running(killed_then_rerun):
    # client() also sets the process-wide tracking URI that mlflow's own lookups use.
    client, result = killed_then_rerun["registry"].client(), killed_then_rerun["result"]
    assert result.success
    killed_version = killed_then_rerun["after_kill"]["versions"][0].version
    killed_run = killed_then_rerun["after_kill"]["running"][0]
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert len(versions) == 2
    for version in versions:
        tags = version.tags
        tagged = tags.get("weights_sha256") and tags.get("dagster_run_id")
        assert tagged or (tags.get("orphaned") == "true" and tags.get(GATE_TAG) == "orphaned"), (version.version, tags)
    # The killed run's version was registered with its tags in one step: they name the run that made it.
    killed = client.get_model_version(NAME, killed_version)
    assert killed.tags["dagster_run_id"] == killed_then_rerun["after_kill"]["dagster_runs"][0].run_id
    assert killed.tags["weights_sha256"] == killed_run.data.tags["weights_sha256"]
    runs = _all_runs(client)
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    ended = client.get_run(killed_run.info.run_id)
    assert ended.info.status == "FAILED"
    assert "worker (pid" in ended.data.tags["ended_by_platform"]
    new_version = result.asset_materializations_for_node(MODEL_NODE)[0].metadata["model_version"].value
    assert alias_version(client, NAME, CHALLENGER) == new_version != killed_version


def test_registering_again_for_the_same_run_and_weights_reuses_the_version(killed_then_rerun):
    # client() also sets the process-wide tracking URI that mlflow's own lookups use.
    client, result = killed_then_rerun["registry"].client(), killed_then_rerun["result"]
    metadata = {k: v.value for k, v in result.asset_materializations_for_node(MODEL_NODE)[0].metadata.items()}
    version = client.get_model_version(NAME, metadata["model_version"])
    client.delete_registered_model_alias(NAME, CHALLENGER)

    def must_not_log() -> str:
        raise AssertionError("a version for this run and weights exists: nothing should be logged again")

    again = registration.register(client, NAME, must_not_log, version.run_id,
                                  {k: version.tags[k] for k in registration.REQUIRED_TAGS})
    assert str(again.version) == str(version.version)
    assert alias_version(client, NAME, CHALLENGER) == str(version.version)
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 2


def test_untagged_versions_are_repaired_from_their_run_or_marked_orphaned(killed_then_rerun, tmp_path):
    client = killed_then_rerun["registry"].client()
    good = client.get_model_version(NAME, killed_then_rerun["after_kill"]["versions"][0].version)
    experiment = client.get_experiment_by_name(NAME).experiment_id
    # As the old code path left them when killed between registering and tagging.
    repairable = client.create_model_version(NAME, good.source, run_id=good.run_id)
    bare_run = client.create_run(experiment).info.run_id
    no_tags = client.create_model_version(NAME, good.source, run_id=bare_run)
    lying_run = client.create_run(experiment, tags={"weights_sha256": "0" * 64, "dagster_run_id": "x"}).info.run_id
    wrong_weights = client.create_model_version(NAME, good.source, run_id=lying_run)
    for run_id in (bare_run, lying_run):
        client.set_terminated(run_id)
    challenger = alias_version(client, NAME, CHALLENGER)
    client.set_model_version_tag(NAME, no_tags.version, GATE_TAG, "passed")
    client.set_registered_model_alias(NAME, CHAMPION, no_tags.version)
    client.set_registered_model_alias(NAME, CHALLENGER, wrong_weights.version)

    repairs = {r.version: r for r in registration.repair_versions(client, NAME, tmp_path)}

    assert {v: r.action for v, r in repairs.items()} == {
        str(repairable.version): "repaired", str(no_tags.version): "orphaned", str(wrong_weights.version): "orphaned"}
    fixed = client.get_model_version(NAME, repairable.version).tags
    assert {k: fixed[k] for k in registration.REQUIRED_TAGS} == {k: good.tags[k] for k in registration.REQUIRED_TAGS}
    assert fixed["repaired_from_run"] == good.run_id
    orphan = client.get_model_version(NAME, no_tags.version).tags
    assert orphan["orphaned"] == "true" and orphan[GATE_TAG] == "orphaned"
    assert orphan["orphaned_previous_gate"] == "passed"
    assert "lacks weights_sha256, dagster_run_id" in orphan["orphaned_reason"]
    assert "differ from run" in client.get_model_version(NAME, wrong_weights.version).tags["orphaned_reason"]
    # An orphan is no longer the challenger, and the deployment refuses it as champion.
    assert alias_version(client, NAME, CHALLENGER) is None
    with pytest.raises(ModelNotApprovedError, match=f"version {no_tags.version}: gate is orphaned"):
        approved_champion(client, NAME)
    # Nothing is deleted, and a second pass has nothing left to do.
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 5
    assert registration.repair_versions(client, NAME, tmp_path) == []
    client.set_registered_model_alias(NAME, CHALLENGER, challenger)
    client.delete_registered_model_alias(NAME, CHAMPION)
