"""MLflow runs of failed or dead Dagster runs are ended as FAILED: by the run-failure sensor and by the sweep.

A real SQLite MLflow backend and a real Dagster instance with real runs (one
succeeded, one failed); MLflow runs are made with the tags the model asset gives them.
"""

import os
import subprocess
import sys
import time

import dagster as dg
import pytest

from platform_assets.deploy.serving import free_port
from platform_assets.resources import MlflowRegistry
from platform_assets.defs.train import runs
from platform_assets.defs.train.sensors import mlflow_runs_on_failure
from tests.conftest import loan, loan_asset


@dg.asset
def fine() -> None:
    """Succeeds."""


@dg.asset
def broken() -> None:
    """Fails."""
    raise RuntimeError("boom")


@pytest.fixture
def backend(tmp_path):
    """An MLflow registry resource on SQLite, its client and experiment id, and a Dagster instance.

    The experiment is the loan-default use case's (its model's name): the sensor closes runs in the
    experiments of the declared use cases.
    """
    registry = MlflowRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=str(tmp_path / "art"))
    experiment_id = registry.ensure_experiment(loan().model_name)
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield registry, registry.client(), experiment_id, instance


def _run(client, experiment_id: str, tags: dict[str, str], parent: str | None = None, **kwargs) -> str:
    if parent:
        tags = {**tags, runs.PARENT_RUN_TAG: parent}
    return client.create_run(experiment_id, tags=tags, **kwargs).info.run_id


def _status(client, run_id: str) -> str:
    return client.get_run(run_id).info.status


def _failed_run(instance):
    result = dg.materialize([broken], instance=instance, raise_on_error=False)
    assert not result.success
    return instance.get_run_by_id(result.run_id)


def _failure_context(instance, run, resources):
    failure = next(e for e in instance.all_logs(run.run_id) if e.dagster_event_type == dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name=mlflow_runs_on_failure.name, dagster_event=failure.dagster_event, dagster_instance=instance,
        dagster_run=run, resources=resources,
    ).for_run_failure()


def test_sensor_ends_the_failed_runs_mlflow_run_and_its_children(backend):
    registry, client, experiment_id, instance = backend
    failed = _failed_run(instance)
    parent = _run(client, experiment_id, {"dagster_run_id": failed.run_id})
    running_child = _run(client, experiment_id, {"candidate": "0"}, parent=parent)
    finished_child = _run(client, experiment_id, {"candidate": "1"}, parent=parent)
    client.set_terminated(finished_child)
    other = _run(client, experiment_id, {"dagster_run_id": "some-other-run"})

    mlflow_runs_on_failure(_failure_context(instance, failed, {"mlflow_registry": registry}))

    assert _status(client, parent) == "FAILED"
    assert _status(client, running_child) == "FAILED"
    assert _status(client, finished_child) == "FINISHED"
    assert _status(client, other) == "RUNNING"
    assert client.get_run(parent).data.tags["ended_by_platform"] == f"Dagster run {failed.run_id} FAILURE"


def test_sensor_with_an_unreachable_backend_skips_without_raising(backend):
    _, _, _, instance = backend
    failed = _failed_run(instance)
    unreachable = MlflowRegistry(tracking_uri=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    mlflow_runs_on_failure(_failure_context(instance, failed, {"mlflow_registry": unreachable}))
    # MLflow's own retries (7, doubling pauses) would take minutes; the first HTTP call also imports the
    # request-header plugins (feast among them: seconds), so the bound is loose.
    assert time.monotonic() - started < 45
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # the sensor's bound on retries is undone


def test_sensor_is_on_by_default_and_in_the_code_location():
    from platform_assets import definitions

    sensor = definitions.defs.get_sensor_def(mlflow_runs_on_failure.name)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.required_resource_keys == {"mlflow_registry"}


def test_sweep_ends_runs_of_finished_unknown_or_dead_dagster_runs_only(backend):
    _, client, experiment_id, instance = backend
    succeeded = dg.materialize([fine], instance=instance).run_id
    failed = _failed_run(instance).run_id
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = dead.stdout.strip()
    live_started = instance.add_run(dg.DagsterRun(job_name="j", run_id="live-run", status=dg.DagsterRunStatus.STARTED))
    dead_started = instance.add_run(dg.DagsterRun(job_name="j", run_id="dead-run", status=dg.DagsterRunStatus.STARTED))
    here = runs.worker_tags()
    eleven_minutes_ago = int((time.time() - 11 * 60) * 1000)
    made = {
        "current": _run(client, experiment_id, {"dagster_run_id": "current-run"}),
        "succeeded": _run(client, experiment_id, {"dagster_run_id": succeeded}),
        "failed": _run(client, experiment_id, {"dagster_run_id": failed}),
        "unknown": _run(client, experiment_id, {"dagster_run_id": "never-seen"}),
        "live": _run(client, experiment_id, {"dagster_run_id": live_started.run_id, **here}),
        "dead": _run(client, experiment_id, {"dagster_run_id": dead_started.run_id, **here,
                                             runs.WORKER_PID_TAG: dead_pid}),
        "elsewhere": _run(client, experiment_id, {"dagster_run_id": dead_started.run_id,
                                                  runs.WORKER_HOST_TAG: "another-pod", runs.WORKER_PID_TAG: dead_pid}),
        "untagged_new": _run(client, experiment_id, {}, run_name="__ASSET_JOB"),
        # Killed between dagster-mlflow's start_run and its tags: named after the job, 11 minutes old.
        "untagged_old_job": _run(client, experiment_id, {}, run_name=instance.get_run_by_id(succeeded).job_name,
                                 start_time=eleven_minutes_ago),
        # Someone's own run in the same experiment, as old: not the platform's to end.
        "untagged_old_other": _run(client, experiment_id, {}, run_name="notebook-experiment",
                                   start_time=eleven_minutes_ago),
    }
    made["current_child"] = _run(client, experiment_id, {}, parent=made["current"])
    made["dead_child"] = _run(client, experiment_id, {}, parent=made["dead"])

    ended = runs.sweep_orphaned_runs(client, experiment_id, instance, "current-run")

    status = {k: _status(client, v) for k, v in made.items()}
    assert {k for k, s in status.items() if s == "FAILED"} == {"succeeded", "failed", "unknown", "dead", "dead_child",
                                                               "untagged_old_job"}
    assert {k for k, s in status.items() if s == "RUNNING"} == {"current", "current_child", "live", "elsewhere",
                                                                "untagged_new", "untagged_old_other"}
    reasons = {e.run_id: e.reason for e in ended}
    assert reasons[made["unknown"]] == "Dagster run never-seen is unknown to this instance"
    assert reasons[made["failed"]] == f"Dagster run {failed} finished with status FAILURE"
    assert f"worker (pid {dead_pid}) is gone" in reasons[made["dead"]]
    assert runs.sweep_orphaned_runs(client, experiment_id, instance, "current-run") == []


def test_a_model_step_that_fails_ends_its_mlflow_run_as_failed(tmp_path):
    from platform_assets import definitions

    resources = definitions.embedded_resources(tmp_path)  # no training set written: the step fails reading it
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        result = dg.materialize([loan_asset("train", "model")], resources=resources, instance=instance, raise_on_error=False)
    assert not result.success
    client = resources["mlflow_registry"].client()
    experiment_id = client.get_experiment_by_name(loan().model_name).experiment_id
    [run] = client.search_runs([experiment_id], f"tags.dagster_run_id = '{result.run_id}'")
    assert run.info.status == "FAILED"


def test_the_experiment_is_marked_as_model_training_so_mlflow_opens_it_on_its_runs(backend, tmp_path):
    """MLflow 3 opens an experiment of unknown kind on its GenAI pages: the platform's are marked as training, also
    one an older version made."""
    from platform_assets.resources import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND

    registry, client, experiment_id, _ = backend
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    older = client.create_experiment("made-before")
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(older).tags
    assert registry.ensure_experiment("made-before") == older
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
