"""The platform's automation conditions, evaluated tick by tick on stand-in assets (no daemon, no sleeps)."""

import dagster as dg

from platform_assets import automation
from platform_assets.keys import UseCaseKeys

STATE = {"check_passes": True}
# The keys of a use case: the stand-ins carry them, as the conditions name their upstream assets by key.
KEYS = UseCaseKeys("loan_default", "applications")


@dg.asset(key=KEYS.key("validated", "stand_in"))
def upstream():
    return 1


@dg.asset_check(asset=upstream, blocking=True)
def upstream_is_valid():
    return dg.AssetCheckResult(passed=STATE["check_passes"])


@dg.asset(key=KEYS.feature("stand_in"), deps=[upstream], automation_condition=automation.feature_condition(KEYS))
def feature():
    return 1


@dg.asset(key=KEYS.champion, deps=[feature])
def champion():
    return 1


@dg.asset(key=KEYS.deployment, deps=[champion, feature], automation_condition=automation.deployment_condition(KEYS))
def deployment():
    return 1


DEFS = dg.Definitions(assets=[upstream, feature, champion, deployment], asset_checks=[upstream_is_valid])


def _tick(instance, cursor):
    result = dg.evaluate_automation_conditions(defs=DEFS, instance=instance, cursor=cursor)
    requested = {r.key for r in result.results if r.true_subset.size > 0}
    return requested, result.cursor


def test_new_upstream_data_flows_on_once_and_never_past_a_failed_blocking_check():
    with dg.instance_for_test() as instance:
        requested, cursor = _tick(instance, None)
        STATE["check_passes"] = False
        dg.materialize([upstream, upstream_is_valid], instance=instance, raise_on_error=False)
        requested, cursor = _tick(instance, cursor)
        assert feature.key not in requested  # new data, but its blocking check failed
        STATE["check_passes"] = True
        assert dg.materialize([upstream, upstream_is_valid], instance=instance).success
        requested, cursor = _tick(instance, cursor)
        assert feature.key in requested
        dg.materialize([feature], instance=instance)
        requested, cursor = _tick(instance, cursor)
        assert feature.key not in requested  # once per update
        # A feature refresh alone does not redeploy; a new champion does.
        assert KEYS.deployment not in requested
        dg.materialize([champion], instance=instance)
        requested, cursor = _tick(instance, cursor)
        assert KEYS.deployment in requested


def test_every_automated_asset_of_the_code_location_waits_for_upstream_blocking_checks():
    from platform_assets import definitions
    from tests.conftest import loan_keys

    keys = loan_keys()
    graph = definitions.defs.resolve_asset_graph()
    automated = {k: graph.get(k).automation_condition for k in graph.get_all_asset_keys()
                 if graph.get(k).automation_condition is not None}
    assert keys.training_set in automated and keys.drift_report in automated
    for key, condition in automated.items():
        labels = [getattr(op, "get_label", lambda: None)() for op in getattr(condition, "operands", [])]
        assert "all_deps_blocking_checks_passed" in labels, key
        # The asset's overview in the UI shows a condition by its top-level label: every one has one.
        assert condition.get_label() and "checks passed" in condition.get_label(), key


def test_the_drift_report_runs_on_its_cron_tick_without_new_data(monkeypatch):
    """Nothing upstream changed since the last report: the report still runs once per tick of the drift cron."""
    import datetime as dt

    monkeypatch.setenv(automation.DRIFT_CRON_ENV, "0 * * * *")

    @dg.asset(key=KEYS.inference_log)
    def inference_log():
        return 1

    @dg.asset(key=KEYS.drift_report, deps=[inference_log], automation_condition=automation.drift_condition(KEYS))
    def drift_report():
        return 1

    defs = dg.Definitions(assets=[inference_log, drift_report])

    def tick(at, cursor):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor, evaluation_time=at)
        return {r.key for r in result.results if r.true_subset.size > 0}, result.cursor

    start = dt.datetime(2026, 12, 1, 10, 5, tzinfo=dt.timezone.utc)
    with dg.instance_for_test() as instance:
        assert dg.materialize([inference_log, drift_report], instance=instance).success
        requested, cursor = tick(start, None)
        requested, cursor = tick(start + dt.timedelta(minutes=10), cursor)
        assert KEYS.drift_report not in requested  # no tick passed, nothing new
        requested, cursor = tick(start + dt.timedelta(minutes=56), cursor)  # 11:01: the 11:00 tick passed
        assert KEYS.drift_report in requested
        dg.materialize([drift_report], instance=instance)
        requested, cursor = tick(start + dt.timedelta(minutes=70), cursor)
        assert KEYS.drift_report not in requested  # once per tick


def test_the_first_training_set_does_not_wait_for_outcome_files_that_never_come():
    """Labels may come with the applications: a never-landed outcome partition must not hold training back."""
    days = dg.DailyPartitionsDefinition(start_date="2026-10-01", end_date="2026-10-05")

    @dg.asset(key=KEYS.outcomes, partitions_def=days)
    def outcomes():
        return 1

    @dg.asset_check(asset=outcomes, blocking=True)
    def outcomes_counted():
        return dg.AssetCheckResult(passed=True)

    @dg.asset(key=KEYS.feature_store)
    def feature_store():
        return 1

    @dg.asset(key=KEYS.training_set, deps=[feature_store, outcomes],
              automation_condition=automation.training_condition(KEYS))
    def training_set():
        return 1

    defs = dg.Definitions(assets=[outcomes, feature_store, training_set], asset_checks=[outcomes_counted])
    with dg.instance_for_test() as instance:
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        dg.materialize([feature_store], instance=instance)
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        assert KEYS.training_set in {r.key for r in result.results if r.true_subset.size > 0}
