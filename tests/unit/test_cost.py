"""What a stage costs: measured on real work (a child that holds memory, a busy loop), carried on materializations."""

import logging
import subprocess
import sys
import time

import dagster as dg

from platform_assets import cost
from platform_assets.cost import COST_KEYS, CostMeter, with_cost
from platform_assets.defs.train.sensors import alert_on_retrain_done

HOLD_MB = 300
# A child that holds HOLD_MB of touched memory for a second, then exits.
HOLDER = f"import time; block = bytearray({HOLD_MB} * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep(1.0)"


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_child_holding_memory_and_a_busy_loop_are_measured():
    with CostMeter(interval_s=0.05) as meter:
        subprocess.run([sys.executable, "-c", HOLDER], check=True)
        _busy(0.5)
    spent = meter.cost
    own_mb = cost.Cost(0, 0, __import__("psutil").Process().memory_info().rss).peak_rss_mb
    assert spent.peak_rss_mb >= own_mb + HOLD_MB * 0.9
    # The waited-for child's CPU counts: it wrote 300 MB; the busy loop alone is 0.5 s.
    assert spent.cpu_s >= 0.5
    assert spent.wall_s >= 1.5


def test_children_that_ran_before_the_stage_are_not_counted():
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.replace("sleep(1.0)", "sleep(30)")])
    try:
        time.sleep(1.5)  # it holds its memory now
        with CostMeter(interval_s=0.05) as meter:
            time.sleep(0.3)
        assert meter.cost.peak_rss_mb < __import__("psutil").Process().memory_info().rss / 2**20 + HOLD_MB * 0.5
    finally:
        holder.kill()
        holder.wait()


@dg.asset
@with_cost
def returned(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    _busy(0.2)
    return dg.MaterializeResult(metadata={"rows": 3})


@dg.multi_asset(specs=[dg.AssetSpec("first"), dg.AssetSpec("second")])
@with_cost
def yielded(context: dg.AssetExecutionContext):
    yield dg.MaterializeResult(asset_key="first", metadata={"rows": 1})
    _busy(0.3)
    yield dg.MaterializeResult(asset_key="second")


def _metadata(instance, key: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_every_materialization_records_its_cost_beside_its_own_metadata():
    with dg.instance_for_test() as instance:
        assert dg.materialize([returned, yielded], instance=instance).success
        one, first, second = (_metadata(instance, k) for k in ("returned", "first", "second"))
    assert one["rows"] == 3 and first["rows"] == 1
    for metadata in (one, first, second):
        assert set(COST_KEYS) <= set(metadata) and metadata["cost/peak_rss_mb"] > 50
    assert one["cost/cpu_s"] >= 0.2
    # A body that yields records the step's cost up to each materialization: the second holds the busy loop.
    assert second["cost/cpu_s"] - first["cost/cpu_s"] >= 0.3 and second["cost/wall_s"] > first["cost/wall_s"]


def test_a_retrain_run_alerts_once_with_its_cost_and_other_runs_do_not(caplog):
    jobs = [dg.define_asset_job("loan_default__retrain", selection=["returned"]),
            dg.define_asset_job("loan_default__drift", selection=["returned"])]
    defs = dg.Definitions(assets=[returned], jobs=jobs)
    alerts = []
    with dg.instance_for_test() as instance, caplog.at_level(logging.WARNING, logger="platform.alerts"):
        for job in jobs:
            result = defs.resolve_job_def(job.name).execute_in_process(instance=instance)
            success = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)[0]
            context = dg.build_run_status_sensor_context(
                sensor_name="alert_on_retrain_done", dagster_instance=instance, dagster_run=result.dagster_run,
                dagster_event=success.dagster_event)
            caplog.clear()
            alert_on_retrain_done(context)
            alerts.append([r.getMessage() for r in caplog.records])
    retrain, drift = alerts
    assert drift == []
    assert len(retrain) == 1 and '"alert": "retrained"' in retrain[0]
    assert "s CPU, peak" in retrain[0] and '"cpu_s": ' in retrain[0] and "returned" in retrain[0]
