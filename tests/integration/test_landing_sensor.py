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


def _run(instance, resources):
    defs = dg.Definitions(
        assets=dg.load_assets_from_modules(definitions.ASSET_MODULES[:2]),
        asset_checks=dg.load_asset_checks_from_modules(definitions.CHECK_MODULES[:2]),
        sensors=[landing_files_sensor],
        resources=resources,
    )
    job = defs.resolve_implicit_global_asset_job_def()
    selection = landing_files_sensor.asset_selection
    return job.execute_in_process(instance=instance, asset_selection=list(selection.resolve(defs.resolve_asset_graph())))


def test_sensor_ingests_new_files_once_and_keeps_running(tmp_path, monkeypatch):
    rows = write_sample_landing(tmp_path, days=2, rows_per_day=50)
    landing = settings.paths(tmp_path).landing
    resources = definitions.build_resources(tmp_path)
    warehouse = settings.paths(tmp_path).warehouse
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        result, cursor = _tick(instance, resources, None)
        assert len(result.run_requests) == 1
        assert _run(instance, resources).success

        # Nothing new: skip. The same bytes rewritten: still nothing new.
        result, cursor = _tick(instance, resources, cursor)
        assert isinstance(result, dg.SkipReason)
        first = sorted(landing.iterdir())[0]
        first.write_bytes(first.read_bytes())
        assert isinstance(_tick(instance, resources, cursor)[0], dg.SkipReason)

        # A new day's file and a broken file: one run, the good rows ingested, the bad file rejected.
        added = write_sample_landing(tmp_path, days=1, rows_per_day=40, start=dt.date(2026, 9, 10), seed=99)
        shutil.copyfile(next((CORPUS / "non_utf8").iterdir()), landing / "applications_2025-12-31.csv")
        result, cursor = _tick(instance, resources, cursor)
        assert len(result.run_requests) == 1
        assert result.run_requests[0].tags["landing/changed_files"] == "2"
        assert _run(instance, resources).success
        with duckdb.connect(str(warehouse), read_only=True) as con:
            raw = con.execute("SELECT count(*) FROM raw.applications").fetchone()[0]
            valid, quarantined = (con.execute(f"SELECT count(*) FROM {t}.applications").fetchone()[0]
                                  for t in ("validated", "quarantine"))
            rejected = con.execute("SELECT count(*) FROM raw.rejected_files").fetchone()[0]
        assert raw == rows + added == valid + quarantined and rejected == 1

        # An unreachable landing location (a bucket that is down) is a skip, not a crash.
        def unreachable(url):
            raise OSError("connection refused")

        monkeypatch.setattr("platform_assets.ingest.landing.list_landing_files", unreachable)
        result, _ = _tick(instance, resources, cursor)
        assert isinstance(result, dg.SkipReason) and "connection refused" in result.skip_message
