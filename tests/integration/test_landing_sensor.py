"""The landing sensor: a dropped file is ingested and validated without anyone calling anything."""

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import duckdb

from platform_assets import definitions, settings
from platform_assets.ingest.sensors import landing_files_sensor
from tests.conftest import write_sample_landing

CORPUS = Path(__file__).resolve().parent.parent / "data" / "bad_inputs"


def _tick(instance, resources, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"landing": resources["landing"]})
    result = landing_files_sensor(context)
    return result, (result.cursor if isinstance(result, dg.SensorResult) else cursor)


def _run_requests(instance, resources, requests):
    """Runs what the sensor asked for, as the daemon would: one run per request, for its day."""
    defs = dg.Definitions(
        assets=dg.load_assets_from_modules(definitions.ASSET_MODULES[:2]),
        asset_checks=dg.load_asset_checks_from_modules(definitions.CHECK_MODULES[:2]),
        sensors=[landing_files_sensor],
        resources=resources,
    )
    job = defs.resolve_implicit_global_asset_job_def()
    selection = list(landing_files_sensor.asset_selection.resolve(defs.resolve_asset_graph()))
    return [
        job.execute_in_process(
            instance=instance, asset_selection=selection, partition_key=r.partition_key, tags=r.tags
        )
        for r in requests
    ]


def _counts(warehouse):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        count = lambda table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
        return {t: count(t) for t in ("raw.applications", "validated.applications", "quarantine.applications",
                                      "raw.landing_files", "raw.rejected_files")}


def test_sensor_ingests_new_days_once_and_keeps_running(tmp_path, monkeypatch):
    rows = write_sample_landing(tmp_path, days=2, rows_per_day=50)
    landing = settings.paths(tmp_path).landing
    resources = definitions.build_resources(tmp_path)
    warehouse = settings.paths(tmp_path).warehouse
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        result, cursor = _tick(instance, resources, None)
        assert sorted(r.partition_key for r in result.run_requests) == ["2026-09-01", "2026-09-02"]
        assert all(run.success for run in _run_requests(instance, resources, result.run_requests))
        first_counts = _counts(warehouse)
        assert first_counts["raw.applications"] == rows

        # Nothing new: skip. The same bytes rewritten: still nothing new.
        result, cursor = _tick(instance, resources, cursor)
        assert isinstance(result, dg.SkipReason)
        first = sorted(landing.iterdir())[0]
        first.write_bytes(first.read_bytes())
        assert isinstance(_tick(instance, resources, cursor)[0], dg.SkipReason)

        # A new day's file, a broken file for another day and a file that belongs to no day:
        # one run per day; the good rows ingested, the broken file rejected, the stray file reported.
        added = write_sample_landing(tmp_path, days=1, rows_per_day=40, start=dt.date(2026, 9, 10), seed=99)
        shutil.copyfile(next((CORPUS / "non_utf8").iterdir()), landing / "applications_2025-12-31.csv")
        (landing / "applications_latest.csv").write_text("not a day\n")
        result, cursor = _tick(instance, resources, cursor)
        assert sorted(r.partition_key for r in result.run_requests) == ["2025-12-31", "2026-09-10"]
        assert [e.metadata["file_of_no_day"].value for e in result.asset_events] == [str(landing / "applications_latest.csv")]
        runs = _run_requests(instance, resources, result.run_requests)
        assert all(run.success for run in runs)
        counts = _counts(warehouse)
        assert counts["raw.applications"] == rows + added == counts["validated.applications"] + counts["quarantine.applications"]
        assert counts["raw.rejected_files"] == 2  # the non-UTF-8 file (its day) and the stray file (no day)
        # Each run touched its own day only: the first two days' files are still there, once.
        assert counts["raw.landing_files"] == first_counts["raw.landing_files"] + 1

        # The same day requested again with the same files is the same run key: the daemon runs it once.
        again = {r.run_key for r in result.run_requests}
        (landing / "applications_2026-09-10.parquet").write_bytes((landing / "applications_2026-09-10.parquet").read_bytes())
        assert isinstance(_tick(instance, resources, cursor)[0], dg.SkipReason)
        assert len(again) == 2

        # An unreachable landing location (a bucket that is down) is a skip, not a crash.
        def unreachable(url):
            raise OSError("connection refused")

        monkeypatch.setattr("platform_assets.ingest.landing.list_landing_files", unreachable)
        result, _ = _tick(instance, resources, cursor)
        assert isinstance(result, dg.SkipReason) and "connection refused" in result.skip_message


def test_identical_reingest_is_a_no_op_with_the_same_data_version(tmp_path):
    write_sample_landing(tmp_path, days=1, rows_per_day=30)
    resources = definitions.build_resources(tmp_path)
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        runs = _run_requests(instance, resources, [dg.RunRequest(partition_key="2026-09-01")] * 2)
        raw = [r.asset_materializations_for_node("raw__applications")[0] for r in runs]
        assert [m.metadata["unchanged"].value for m in raw] == [False, True]
        versions = [instance.get_latest_data_version_record(dg.AssetKey(["raw", "applications"]), partition_key="2026-09-01")]
        assert versions[0] is not None
        assert len({m.tags["dagster/data_version"] for m in raw}) == 1
