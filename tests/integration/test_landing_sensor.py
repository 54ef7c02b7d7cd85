"""The landing sensor: a dropped file is ingested and validated without anyone calling anything."""

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import yaml

from platform_assets import definitions, settings
from platform_assets.defs.ingest.sensors import FILES_TAG, MAX_ATTEMPTS_ENV
from platform_assets.resources import Warehouse
from tests.conftest import PROJECT_ROOT, ingest_days, loan, loan_definitions, write_sample_landing

CORPUS = Path(__file__).resolve().parent.parent / "data" / "bad_inputs"


def _landing_sensor():
    """The loan-default use case's landing sensor (``loan_default__landing_files``)."""
    (sensor,) = [s for s in loan_definitions().sensors if s.name == "loan_default__landing_files"]
    return sensor


def _landing(root):
    """Where the loan-default source's files land under the state root ``root``."""
    return settings.paths(root).landing / loan().source.landing_folder


def _instance(tmp_path):
    """A test instance with the shipped dagster.yaml's concurrency settings (the pool `warehouse`, limit 1)."""
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    shipped = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    return dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home"), overrides={"concurrency": shipped["concurrency"]})


def _tick(instance, resources, cursor):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor,
        resources={"landing": resources["landing"], "warehouse": resources["warehouse"]},
    )
    result = _landing_sensor()(context)
    return result, (result.cursor if isinstance(result, dg.SensorResult) else cursor)


def _settled_tick(instance, resources, cursor):
    """Two ticks: files new on the first are settled (same size and mtime) on the second."""
    first, cursor = _tick(instance, resources, cursor)
    assert not _requests(first), "a file seen for the first time must not be requested"
    return _tick(instance, resources, cursor)


def _requests(result):
    return result.run_requests if isinstance(result, dg.SensorResult) and result.run_requests else []


def _run_requests(instance, resources, requests):
    """Runs what the sensor asked for, as the daemon would: one run per request, for its day."""
    sensor = _landing_sensor()
    defs = dg.Definitions(
        assets=loan_definitions().assets,
        asset_checks=loan_definitions().asset_checks,
        sensors=[sensor],
        resources=resources,
    )
    job = defs.resolve_implicit_global_asset_job_def()
    selection = list(sensor.asset_selection.resolve(defs.resolve_asset_graph()))
    return [
        job.execute_in_process(
            instance=instance, asset_selection=selection, partition_key=r.partition_key, tags=r.tags,
            raise_on_error=False,
        )
        for r in requests
    ]


def _counts(warehouse):
    with duckdb.connect(str(warehouse), read_only=True) as con:
        count = lambda table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
        return {t: count(t) for t in ("raw.applications", "validated.applications", "quarantine.applications",
                                      "raw.applications_landing_files", "raw.applications_rejected_files")}


def test_sensor_ingests_new_days_once_and_keeps_running(tmp_path, monkeypatch):
    rows = write_sample_landing(tmp_path, days=2, rows_per_day=50)
    landing = _landing(tmp_path)
    resources = definitions.embedded_resources(tmp_path)
    warehouse = settings.paths(tmp_path).warehouse
    with _instance(tmp_path) as instance:
        result, cursor = _settled_tick(instance, resources, None)
        assert sorted(r.partition_key for r in result.run_requests) == ["2026-09-01", "2026-09-02"]
        assert all(run.success for run in _run_requests(instance, resources, result.run_requests))
        first_counts = _counts(warehouse)
        assert first_counts["raw.applications"] == rows

        # Nothing new: skip. The same bytes rewritten: a change of mtime, then settled and already held.
        result, cursor = _tick(instance, resources, cursor)
        assert not _requests(result) and result.skip_reason
        first = sorted(landing.iterdir())[0]
        first.write_bytes(first.read_bytes())
        result, cursor = _settled_tick(instance, resources, cursor)
        assert not _requests(result)

        # A new day's file, a broken file for another day and a file that belongs to no day:
        # one run per day; the good rows ingested, the broken file rejected, the stray file reported.
        added = write_sample_landing(tmp_path, days=1, rows_per_day=40, start=dt.date(2026, 9, 10), seed=99)
        shutil.copyfile(next((CORPUS / "non_utf8").iterdir()), landing / "applications_2025-12-31.csv")
        (landing / "applications_latest.csv").write_text("not a day\n")
        result, cursor = _settled_tick(instance, resources, cursor)
        assert sorted(r.partition_key for r in result.run_requests) == ["2025-12-31", "2026-09-10"]
        assert [e.metadata["file_of_no_day"].value for e in result.asset_events] == [str(landing / "applications_latest.csv")]
        runs = dict(zip((r.partition_key for r in result.run_requests), _run_requests(instance, resources, result.run_requests)))
        assert runs["2026-09-10"].success
        # The day whose only file is unreadable read 0 rows from the file found: its run fails visibly, on the
        # blocking check, before anything is validated from it.
        assert not runs["2025-12-31"].success
        found = {e.check_name: e for e in runs["2025-12-31"].get_asset_check_evaluations()}["landing_files_found_were_read"]
        assert not found.passed and "not UTF-8" in found.description
        counts = _counts(warehouse)
        assert counts["raw.applications"] == rows + added == counts["validated.applications"] + counts["quarantine.applications"]
        assert counts["raw.applications_rejected_files"] == 2  # the non-UTF-8 file (its day) and the stray file (no day)
        # Each run touched its own day only: the first two days' files are still there, once.
        assert counts["raw.applications_landing_files"] == first_counts["raw.applications_landing_files"] + 1

        # Everything is held now, the rejected files included: nothing is asked for or reported again.
        result, cursor = _tick(instance, resources, cursor)
        assert not _requests(result) and not result.asset_events

        # An unreachable landing location (a bucket that is down) is a skip, not a crash.
        def unreachable(url):
            raise OSError("connection refused")

        monkeypatch.setattr("platform_assets.ingest.landing.list_landing_files", unreachable)
        result, _ = _tick(instance, resources, cursor)
        assert isinstance(result, dg.SkipReason) and "connection refused" in result.skip_message


def test_files_ingested_by_another_route_are_not_requested_again(tmp_path):
    """`make demo` ingests through `dagster asset materialize`; the sensor started later asks for nothing."""
    write_sample_landing(tmp_path, days=5, rows_per_day=30)
    resources = definitions.embedded_resources(tmp_path)
    with _instance(tmp_path) as instance:
        assert ingest_days(resources, "2026-09-01", "2026-09-05", instance).success
        result, cursor = _settled_tick(instance, resources, None)  # a fresh sensor: no cursor
        assert not _requests(result)
        assert "no day to ingest among 5 landing files" in result.skip_reason.skip_message

        assert not instance.event_log_storage.get_pool_limits()
        write_sample_landing(tmp_path, days=1, rows_per_day=30, start=dt.date(2026, 9, 10), seed=3)
        result, cursor = _settled_tick(instance, resources, cursor)
        assert [r.partition_key for r in _requests(result)] == ["2026-09-10"]
        # The pool has its limit before the first run is queued (dagster would set it only on dequeue).
        assert [(p.name, p.limit) for p in instance.event_log_storage.get_pool_limits()] == [("warehouse", 1)]


def test_a_file_still_being_written_waits_until_it_stops_changing(tmp_path):
    write_sample_landing(tmp_path, days=1, rows_per_day=80, start=dt.date(2026, 9, 5))
    landing = _landing(tmp_path)
    parquet = landing / "applications_2026-09-05.parquet"
    import pandas as pd

    frame = pd.read_parquet(parquet)
    content = frame.to_csv(index=False).encode()
    parquet.unlink()
    growing = landing / "applications_2026-09-05.csv"
    resources = definitions.embedded_resources(tmp_path)
    with _instance(tmp_path) as instance:
        growing.write_bytes(content[: len(content) // 2])  # the writer is half way
        result, cursor = _tick(instance, resources, None)
        assert not _requests(result) and "1 file(s) still changing" in result.skip_reason.skip_message
        with growing.open("ab") as handle:  # it goes on writing between the ticks
            handle.write(content[len(content) // 2:])
        result, cursor = _tick(instance, resources, cursor)
        assert not _requests(result), "a file whose size changed since the last tick is not read"
        result, cursor = _tick(instance, resources, cursor)
        assert [r.partition_key for r in _requests(result)] == ["2026-09-05"]
        assert all(run.success for run in _run_requests(instance, resources, _requests(result)))
        assert _counts(settings.paths(tmp_path).warehouse)["raw.applications"] == len(frame)  # every row, none half


def test_a_day_whose_run_failed_is_requested_again_a_bounded_number_of_times(tmp_path, monkeypatch):
    write_sample_landing(tmp_path, days=1, rows_per_day=30)
    resources = definitions.embedded_resources(tmp_path)
    monkeypatch.setenv(MAX_ATTEMPTS_ENV, "2")
    replace = Warehouse.replace_partitions

    def crash_in_validation(self, tables, *args, **kwargs):
        if any(name.startswith("validated.") for name in tables):
            raise RuntimeError("simulated crash inside validation")
        return replace(self, tables, *args, **kwargs)

    with _instance(tmp_path) as instance:
        result, cursor = _settled_tick(instance, resources, None)
        monkeypatch.setattr(Warehouse, "replace_partitions", crash_in_validation)
        keys = []
        for _attempt in range(2):  # raw is written, validation crashes: the day stays retryable
            assert [r.partition_key for r in _requests(result)] == ["2026-09-01"]
            keys.append(_requests(result)[0].run_key)
            assert not any(run.success for run in _run_requests(instance, resources, _requests(result)))
            result, cursor = _tick(instance, resources, cursor)
        assert len(set(keys)) == 2, "each attempt needs a new run key, or the daemon would skip it"
        # Two failed runs for the same files: no third request, and the sensor says so once.
        assert not _requests(result)
        assert json.loads(cursor)["given_up"] == {"2026-09-01": _requests_tag(instance)}
        assert not _requests(_tick(instance, resources, cursor)[0])

        # New content for the day: asked for again, and it goes through once the crash is fixed.
        monkeypatch.setattr(Warehouse, "replace_partitions", replace)
        write_sample_landing(tmp_path, days=1, rows_per_day=31, seed=5)
        result, cursor = _settled_tick(instance, resources, cursor)
        assert [r.partition_key for r in _requests(result)] == ["2026-09-01"]
        assert all(run.success for run in _run_requests(instance, resources, _requests(result)))
        assert not _requests(_tick(instance, resources, cursor)[0])


def _requests_tag(instance):
    """The files hash the failed runs were tagged with (one value: they all ran the same files)."""
    (value,) = {run.tags[FILES_TAG] for run in instance.get_runs()}
    return value


def test_a_locked_or_busy_warehouse_skips_the_tick(tmp_path):
    write_sample_landing(tmp_path, days=1, rows_per_day=20)
    resources = definitions.embedded_resources(tmp_path)
    warehouse = settings.paths(tmp_path).warehouse
    warehouse.parent.mkdir(parents=True)
    with _instance(tmp_path) as instance:
        _, cursor = _tick(instance, resources, None)
        holder = subprocess.Popen(  # a run launched outside the queue, writing
            [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(warehouse)!r}); print('held', flush=True); sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "held"
            result, cursor = _tick(instance, resources, cursor)
        finally:
            holder.kill()
            holder.wait()
        assert not _requests(result) and "warehouse is locked" in result.skip_reason.skip_message

        # A run in progress that holds the warehouse pool: the sensor does not even open the file.
        seen = {}

        @dg.asset(pool="warehouse")
        def busy_step(context: dg.AssetExecutionContext):
            seen["result"] = _tick(context.instance, resources, cursor)[0]

        assert dg.materialize([busy_step], instance=instance).success
        assert not _requests(seen["result"]) and "in use by run" in seen["result"].skip_reason.skip_message
        assert [r.partition_key for r in _requests(_tick(instance, resources, cursor)[0])] == ["2026-09-01"]


def test_a_day_stopped_by_the_quarantine_gate_is_not_requested_again(tmp_path):
    """The gate's verdict is on the files: the same files asked for again would be stopped again."""
    rows = write_sample_landing(tmp_path, days=1, rows_per_day=40, dirty_fraction=0.5)  # far over the 5% threshold
    resources = definitions.embedded_resources(tmp_path)
    with _instance(tmp_path) as instance:
        result, cursor = _settled_tick(instance, resources, None)
        (run,) = _run_requests(instance, resources, _requests(result))
        assert not run.success
        failed = [e.step_key for e in run.all_events if e.is_step_failure]
        assert failed and all("quarantine_rate_under_threshold" in key for key in failed)
        counts = _counts(settings.paths(tmp_path).warehouse)
        assert counts["raw.applications"] == rows == counts["validated.applications"] + counts["quarantine.applications"]
        result, cursor = _tick(instance, resources, cursor)
        assert not _requests(result) and "no day to ingest" in result.skip_reason.skip_message
