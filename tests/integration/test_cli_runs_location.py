"""Runs started from the command line, as ``make materialize`` starts them, belong to the UI's code location.

The UI lists a job's runs by the ``.dagster/repository`` tag (``__repository__@<location>``), which
dagster derives from a run's ``remote_job_origin``. ``dagster job execute -m`` and ``dagster asset
materialize -m`` record none, so after the demo the job pages said "No runs found"; the Makefile now
runs ``python -m platform_assets.launch``, whose runs carry the location workspace.yaml names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAY = "2025-12-01"


def _workspace_location_name() -> str:
    (entry,) = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())["load_from"]
    return entry["python_module"]["location_name"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=PROJECT_ROOT, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def home(_isolated_state):
    """The temporary state root, with the shipped dagster.yaml in its DAGSTER_HOME (as `make` installs it)."""
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    assert dagster_home.is_relative_to(_isolated_state) and not dagster_home.is_relative_to(PROJECT_ROOT)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    return _isolated_state


@pytest.mark.parametrize(
    ("command", "job_name", "succeeds"),
    [
        # `make materialize`'s first step, for one day; the landed day materializes.
        (["--assets", "loan_default/raw/applications", "--partition", DAY], "__ASSET_JOB", True),
        # a job, as `make materialize` runs loan_default__features_to_serving and loan_default__drift: drift
        # fails with no data, and a failed run must show under its job too.
        (["--job", "loan_default__drift"], "loan_default__drift", False),
    ],
    ids=["assets", "job"],
)
def test_cli_run_carries_the_workspace_location(home, command, job_name, succeeds):
    import dagster as dg
    from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

    generated = _run("platform_assets", "generate", "--days", "1", "--rows-per-day", "50", "--start", DAY)
    assert generated.returncode == 0, generated.stderr[-3000:]

    launched = _run("platform_assets.launch", *command)
    assert (launched.returncode == 0) == succeeds, launched.stdout[-3000:] + launched.stderr[-3000:]

    location = _workspace_location_name()
    assert location == "platform_assets"
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(dg.RunsFilter(job_name=job_name))
        assert run.status == (dg.DagsterRunStatus.SUCCESS if succeeds else dg.DagsterRunStatus.FAILURE)
        assert run.remote_job_origin is not None
        assert run.remote_job_origin.location_name == location
        assert run.remote_job_origin.repository_origin.repository_name == "__repository__"
        # the filter the UI's job page uses: the job's name and the repository label of the location it loads
        shown = instance.get_runs(
            dg.RunsFilter(job_name=job_name, tags={REPOSITORY_LABEL_TAG: f"__repository__@{location}"})
        )
        assert [r.run_id for r in shown] == [run.run_id]
        if command[0] == "--assets":
            assert run.tags["dagster/partition"] == DAY
            assert run.asset_selection == {dg.AssetKey(["loan_default", "raw", "applications"])}
            assert instance.get_latest_materialization_event(dg.AssetKey(["loan_default", "raw", "applications"])) is not None


def test_a_range_of_an_asset_that_runs_a_partition_at_a_time_is_refused_with_what_to_do(home):
    """The inference log takes one day per run: a range is refused before any run is made, and says how."""
    import dagster as dg

    done = _run("platform_assets.launch", "--job", "loan_default__inference_days", "--partition-range",
                f"{DAY}...2025-12-03")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "loan_default/monitor/inference_log" in done.stderr and "--partition" in done.stderr
    assert "Traceback" not in done.stderr and "DagsterInvariantViolationError" not in done.stderr
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs() == []


def test_a_command_typed_by_hand_gets_the_platforms_instance(_isolated_state, monkeypatch):
    """No DAGSTER_HOME exported: the launch goes under the state root's dagster_home, with the run queue and run
    monitoring of the project's dagster.yaml (Dagster's warning of a missing instance file never shows)."""
    monkeypatch.delenv("DAGSTER_HOME")
    done = _run("platform_assets.launch", "--job", "loan_default__inference_days", "--partition-range",
                f"{DAY}...2025-12-03")  # refused: no run, but the instance is set up first
    home = _isolated_state / "dagster_home"
    assert done.returncode == 2 and "No dagster instance configuration file found" not in done.stderr
    assert (home / "dagster.yaml").read_text() == (PROJECT_ROOT / "dagster.yaml").read_text()
