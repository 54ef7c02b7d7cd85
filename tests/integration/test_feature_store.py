"""The feature store on recent generated data: checks pass, and fail where leakage or skew is planted.

Also the Feast CLI on the exported marts (``feast apply``, ``feast materialize-incremental``)
and the feature server (``feast serve``) against the SDK.
"""

import datetime as dt
import os
import shutil
import subprocess
import time
import sys

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from platform_assets import definitions, settings
from platform_assets.defs.features import checks as feature_checks
from platform_assets.features import consistency, feast_ops
from platform_assets.defs.judging import judge
from tests.conftest import PROJECT_ROOT, ingest_days, loan, loan_asset, loan_check, loan_keys, loan_paths, \
    write_sample_landing

USE_CASE = loan()
KEYS = loan_keys()
ONLINE_FEATURE_SERVICE = USE_CASE.online_feature_service
FEATURE_CHECKS = [loan_check("online_matches_offline"), loan_check("training_set_has_no_leakage"),
                  loan_check("features_are_fresh")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Raw -> validated -> dbt -> feature store -> training set on 40 days ending yesterday."""
    root = tmp_path_factory.mktemp("feature_home")
    start = dt.date.today() - dt.timedelta(days=40)
    write_sample_landing(root, days=40, rows_per_day=80, start=start)
    resources = definitions.embedded_resources(root)
    assert ingest_days(resources, start.isoformat(), (start + dt.timedelta(days=39)).isoformat()).success
    result = dg.materialize(
        [loan_asset("raw", KEYS.source), loan_asset("validated", KEYS.source),
         loan_asset("features", "stg_applications"),  # the dbt models
         loan_asset("features", "feature_store"), loan_asset("features", "training_set"), *FEATURE_CHECKS],
        resources=resources,
        # the days are ingested above: the feature layer only (dbt models, feature store, training set)
        selection=dg.AssetSelection.key_prefixes([USE_CASE.name, "features"]),
        raise_on_error=False,
    )
    return root, resources, result


@pytest.fixture
def restore(built):
    """Puts back every file a test plants something in."""
    saved = []

    def keep(path):
        backup = path.with_name(path.name + ".orig")
        shutil.copy2(path, backup)
        saved.append((path, backup))
        return path

    yield keep
    for path, backup in saved:
        backup.replace(path)


def test_every_feature_check_passes_on_clean_data(built):
    _, _, result = built
    assert result.success
    evaluations = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
    assert {"online_matches_offline", "training_set_has_no_leakage", "features_are_fresh",
            "assert_history_sees_only_the_past"} <= set(evaluations)
    assert [name for name, e in evaluations.items() if not e.passed] == []
    assert evaluations["features_are_fresh"].metadata["online_lag_hours"].value == 0.0


def _one_labelled_row_with_history(root):
    training = pd.read_parquet(loan_paths(root).training_set)
    return training, training[training["prior_applications_90d"] > 0].iloc[0]


def test_point_in_time_join_keeps_a_planted_future_row_out(built, restore):
    root, resources, _ = built
    training, row = _one_labelled_row_with_history(root)
    path = restore(settings.paths(root).feast / "data" / "fct_applicant_history.parquet")
    history = pd.read_parquet(path)
    planted_at = row["event_timestamp"] + (row["label_ts"] - row["event_timestamp"]) / 2  # before the label is known
    planted = history[history["application_id"] == row["application_id"]].assign(
        application_id="planted", event_timestamp=planted_at.tz_localize(None), prior_applications_90d=999.0
    )
    pd.concat([history, planted]).to_parquet(path, index=False, coerce_timestamps="us")

    store = resources["feast"].store()
    entities = pd.DataFrame({
        "application_id": [row["application_id"]] * 2,
        "applicant_id": [row["applicant_id"]] * 2,
        "event_timestamp": [row["event_timestamp"], planted_at + pd.Timedelta(seconds=1)],
    })
    got = feast_ops.historical_features(store, entities, USE_CASE)
    # The label's row sees its own history; only a question asked after the planted time sees it.
    assert got["prior_applications_90d"].tolist() == [row["prior_applications_90d"], 999.0]


def test_the_training_set_asked_of_feast_in_pieces_is_the_one_asked_whole(built, restore, monkeypatch):
    """PLATFORM_BATCH_ROWS small: Feast answers 97 labelled rows at a time, appended to the file; the file holds
    the same rows, features, splits and manifest as the one answer of all rows (the module's build)."""
    import pyarrow.parquet as pq

    from platform_assets.features.training_set import read_manifest

    root, resources, _ = built
    path = restore(loan_paths(root).training_set)
    whole, whole_manifest = pq.read_table(path), read_manifest(path)
    assert whole.num_rows > 3 * 97
    monkeypatch.setenv("PLATFORM_BATCH_ROWS", "97")
    result = dg.materialize([loan_asset("features", "training_set")], resources=resources)
    metadata = result.asset_materializations_for_node(result.all_node_events[0].node_name)[0].metadata
    pieces = pq.read_table(path)
    assert pieces.equals(whole) and read_manifest(path) == whole_manifest
    assert metadata["dagster/row_count"].value == whole.num_rows
    assert sum(metadata["split_rows"].value.values()) == whole.num_rows
    split = whole.column("split").to_pandas()
    assert metadata["split_rows"].value == {s: int((split == s).sum()) for s in ("train", "validation", "test")}


def test_leakage_check_fails_when_a_later_value_reaches_a_row(built, restore):
    root, resources, _ = built
    training, row = _one_labelled_row_with_history(root)
    path = restore(loan_paths(root).training_set)
    training.loc[training["application_id"] == row["application_id"], "prior_applications_90d"] += 1.0
    training.to_parquet(path, index=False)
    result = judge(loan_check("training_set_has_no_leakage"), config=feature_checks.LeakageCheckConfig(),
                   state=resources["state"], feast=resources["feast"])
    assert not result.passed
    assert result.metadata["features_not_as_of_row"].value == 1


def test_skew_check_fails_when_one_online_value_differs_in_the_last_digit(built):
    root, resources, _ = built
    config = feature_checks.SkewCheckConfig()
    store = resources["feast"].store()
    sampled = consistency.latest_offline_rows(store, USE_CASE, config.sample_size, config.seed)["applicant_activity"]
    latest = sampled.head(1)
    amounts = list(latest["recent_loan_amounts"].iloc[0])
    changed = latest.assign(recent_loan_amounts=[[*amounts[:-1], float(np.nextafter(amounts[-1], np.inf))]])
    store.write_to_online_store("applicant_activity", changed)
    try:
        result = judge(loan_check("online_matches_offline"), config=config, feast=resources["feast"])
    finally:
        store.write_to_online_store("applicant_activity", latest)
    assert not result.passed
    assert result.metadata["mismatches"].value == 1
    assert judge(loan_check("online_matches_offline"), config=config, feast=resources["feast"]).passed


def test_skew_check_fails_when_the_online_store_misses_the_newest_day(built):
    """A stale online store (the newest day exported but not materialized) serves old activity."""
    root, resources, _ = built
    data = settings.paths(root).feast / "data"
    activity = pd.read_parquet(data / "fct_applicant_activity.parquet")
    newest_day = activity["event_timestamp"].dt.date.max()
    today = activity[activity["event_timestamp"].dt.date == newest_day]
    # Applicants active on the newest day whose online row then was an earlier day's.
    returning = today[today["applicant_id"].isin(activity[activity["event_timestamp"].dt.date < newest_day]["applicant_id"])]
    assert len(returning) > 0
    store = resources["feast"].store()
    older = (activity[activity["applicant_id"].isin(returning["applicant_id"])
                      & (activity["event_timestamp"].dt.date < newest_day)]
             .sort_values("event_timestamp").groupby("applicant_id").tail(1))
    store.write_to_online_store("applicant_activity", older)
    try:
        expected = consistency.latest_offline_rows(store, USE_CASE, len(activity))
        rows = expected["applicant_activity"]
        mismatches = consistency.online_mismatches(
            store, {"applicant_activity": rows[rows["applicant_id"].isin(returning["applicant_id"])]})
    finally:
        store.write_to_online_store("applicant_activity", returning)
    assert {e["applicant_id"] for e in mismatches["entity"]} == set(returning["applicant_id"])


def test_freshness_check_warns_when_newer_features_are_not_online(built, restore):
    root, resources, _ = built
    path = restore(settings.paths(root).feast / "data" / "fct_application_features.parquet")
    apps = pd.read_parquet(path)
    newer = apps.tail(1).assign(application_id="newer", event_timestamp=apps["event_timestamp"].max() + pd.Timedelta(hours=3))
    pd.concat([apps, newer]).to_parquet(path, index=False, coerce_timestamps="us")
    result = judge(
        loan_check("features_are_fresh"),
        config=feature_checks.FeatureFreshnessConfig(), state=resources["state"], warehouse=resources["warehouse"],
        feast=resources["feast"],
    )
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["online_lag_hours"].value == pytest.approx(3.0, abs=0.01)


def test_feast_cli_applies_and_materializes_incrementally(built, tmp_path):
    root, _, _ = built
    shutil.copytree(settings.paths(root).feast / "data", tmp_path / "feast" / "data")
    feast_cli = PROJECT_ROOT / ".venv" / "bin" / "feast"
    env = {**os.environ, "PLATFORM_HOME": str(tmp_path)}
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    for args in (["apply"], ["materialize-incremental", now.isoformat()]):
        out = subprocess.run([str(feast_cli), *args], cwd=PROJECT_ROOT / "feature_repo", env=env,
                             capture_output=True, text=True, timeout=240)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]

    from platform_assets.resources import FeatureStore

    store = FeatureStore(repo_path=str(PROJECT_ROOT / "feature_repo"), state_root=str(tmp_path)).store()
    # From scratch, materialize-incremental loads each online view's TTL (a year): every applicant's latest row.
    expected = consistency.latest_offline_rows(store, USE_CASE, 10**9)
    assert len(expected["applicant_activity"]) > 10
    mismatches = consistency.online_mismatches(store, expected)
    assert mismatches.empty, mismatches.head()

    # `feast ui` serves the same repository: its project list names the project.
    import requests

    from platform_assets.deploy.processes import free_port, terminate_process_group

    port = free_port()
    ui = subprocess.Popen([str(feast_cli), "ui", "-h", "127.0.0.1", "-p", str(port)], cwd=PROJECT_ROOT / "feature_repo",
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                projects = requests.get(f"http://127.0.0.1:{port}/projects-list.json", timeout=2).json()
                break
            except (requests.ConnectionError, ValueError):
                assert ui.poll() is None and time.monotonic() < deadline, "feast ui did not start"
                time.sleep(0.5)
        assert [p["id"] for p in projects["projects"]] == [store.project]
    finally:
        terminate_process_group(ui.pid)


def test_feature_server_serves_what_the_sdk_serves_and_stops_with_its_model_server(built, tmp_path):
    from platform_assets.deploy import feature_server
    from platform_assets.deploy.processes import group_alive

    root, resources, _ = built
    model_server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    record = tmp_path / "feature_server.json"
    server = feature_server.start_feature_server(
        repo_path=PROJECT_ROOT / "feature_repo", state_root=root, log_path=tmp_path / "fs.log",
        record_path=record, watch_pid=model_server.pid,
    )
    try:
        feature_server.wait_until_ready(server, timeout_s=120)
        apps = pd.read_parquet(settings.paths(root).feast / "data" / "fct_application_features.parquet").tail(100)
        # Known applicants and one the store has never seen.
        entities = {"applicant_id": [*apps["applicant_id"].astype(int).tolist(), 1]}
        served = feature_server.online_features_over_http(server.url, ONLINE_FEATURE_SERVICE, entities)
        store = resources["feast"].store()
        rows = [{"applicant_id": b} for b in entities["applicant_id"]]
        sdk = pd.DataFrame(store.get_online_features(features=store.get_feature_service(ONLINE_FEATURE_SERVICE),
                                                     entity_rows=rows).to_dict())
        assert served["recent_application_ts"].iloc[-1] is None
        assert all(isinstance(v, list) and v for v in served["recent_application_ts"].iloc[:-1])
        assert sorted(served.columns) == sorted(sdk.columns)
        pd.testing.assert_frame_equal(served[sdk.columns], sdk, check_exact=True)

        model_server.kill()
        model_server.wait()
        deadline = dt.datetime.now() + dt.timedelta(seconds=20)
        while group_alive(server.pid) and dt.datetime.now() < deadline:
            subprocess.run(["sleep", "0.2"])
        assert not group_alive(server.pid)
    finally:
        model_server.kill()
        feature_server.stop_feature_server(record)


def test_concurrent_lookups_on_several_feature_server_workers_all_answer_what_the_sdk_answers(built, tmp_path):
    """SQLite online stores misbehave under concurrent access (feast-dev/feast#2233): 16 callers look up
    at once from 2 ``feast serve`` workers while the store is written to; every lookup is answered
    and equals the SDK's answer."""
    import threading

    from platform_assets.deploy import feature_server

    root, resources, _ = built
    store = resources["feast"].store()
    sampled = consistency.latest_offline_rows(store, USE_CASE, 200, 3)["applicant_activity"]
    ids = sampled["applicant_id"].astype(int).tolist()
    rows = [{"applicant_id": i} for i in ids]
    sdk = pd.DataFrame(store.get_online_features(features=store.get_feature_service(ONLINE_FEATURE_SERVICE),
                                                 entity_rows=rows).to_dict())
    record = tmp_path / "feature_server.json"
    server = feature_server.start_feature_server(
        repo_path=PROJECT_ROOT / "feature_repo", state_root=root, log_path=tmp_path / "fs.log",
        record_path=record, workers=2)
    errors, mismatches, answered = [], [], []
    try:
        feature_server.wait_until_ready(server, timeout_s=120)

        def caller(seed: int) -> None:
            rng = np.random.default_rng(seed)
            for _ in range(15):
                picked = sorted(rng.choice(len(ids), size=20, replace=False).tolist())
                try:
                    served = feature_server.online_features_over_http(
                        server.url, ONLINE_FEATURE_SERVICE, {"applicant_id": [ids[i] for i in picked]}, timeout_s=30)
                except Exception as exc:  # noqa: BLE001 - counted, asserted below
                    errors.append(repr(exc)[:300])
                    continue
                expected = sdk.iloc[picked].reset_index(drop=True)
                if feature_server.differing_values(served, expected) != 0:
                    mismatches.append(picked)
                answered.append(len(picked))

        callers = [threading.Thread(target=caller, args=(seed,)) for seed in range(16)]
        for thread in callers:
            thread.start()
        for _ in range(5):  # the same values written again while the callers read
            store.write_to_online_store("applicant_activity", sampled)
        for thread in callers:
            thread.join()
    finally:
        feature_server.stop_feature_server(record)
    assert errors == []
    assert mismatches == []
    assert sum(answered) == 16 * 15 * 20


def test_history_is_the_same_three_ways_dbt_python_and_the_online_activity(built):
    """The training features (dbt), the definition (history.py on raw applications) and what the
    server computes from the online activity lists agree for every application."""
    import duckdb

    from platform_assets.use_cases.loan_default.request_features import HISTORY_FEATURES, history_features

    root, _, _ = built
    paths = settings.paths(root)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        apps = con.execute("SELECT application_id, applicant_id, application_ts, loan_amount "
                           "FROM features.stg_applications").df()
        mart = con.execute("SELECT * FROM features.fct_applicant_history").df().set_index("application_id")
    activity = pd.read_parquet(paths.feast / "data" / "fct_applicant_activity.parquet")
    apps["epoch"] = apps["application_ts"].astype("datetime64[us]").astype("int64") / 1e6
    by_applicant = {k: g for k, g in apps.groupby("applicant_id")}
    repeat = apps[apps["applicant_id"].map(apps["applicant_id"].value_counts()) > 1]
    checked = 0
    for row in repeat.sample(n=min(300, len(repeat)), random_state=0).itertuples():
        mine = by_applicant[row.applicant_id]
        from_raw = history_features(mine["epoch"], mine["loan_amount"], row.epoch)
        # The online row the server would read on this day: the applicant's latest before the day.
        day = row.application_ts.normalize()
        rows = activity[(activity["applicant_id"] == row.applicant_id) & (activity["event_timestamp"] < day)]
        if len(rows):
            last = rows.sort_values("event_timestamp").iloc[-1]
            online = history_features(last["recent_application_ts"], last["recent_loan_amounts"], row.epoch)
        else:
            online = history_features([], [], row.epoch)
        for name in HISTORY_FEATURES:
            offline = float(mart.loc[row.application_id, name])
            assert from_raw[name] == pytest.approx(offline, rel=1e-9, abs=1e-6), (row.application_id, name)
            assert online[name] == pytest.approx(offline, rel=1e-9, abs=1e-6), (row.application_id, name)
        checked += 1
    assert checked > 50
    assert (mart["prior_applications_90d"] > 0).sum() > 20


def test_materializing_in_windows_of_days_leaves_every_entitys_latest_row_online(tmp_path, monkeypatch):
    """PLATFORM_BATCH_ROWS small: the online store is loaded a few days at a time, and ends as one load would."""
    monkeypatch.setenv("PLATFORM_BATCH_ROWS", "150")
    start = dt.date.today() - dt.timedelta(days=10)
    write_sample_landing(tmp_path, days=10, rows_per_day=60, start=start)
    resources = definitions.embedded_resources(tmp_path)
    assert ingest_days(resources, start.isoformat(), (start + dt.timedelta(days=9)).isoformat()).success
    result = dg.materialize(
        [loan_asset("raw", KEYS.source), loan_asset("validated", KEYS.source), loan_asset("features", "stg_applications"),
         loan_asset("features", "feature_store"), loan_asset("features", "training_set")],
        resources=resources, selection=dg.AssetSelection.key_prefixes([USE_CASE.name, "features"]) - dg.AssetSelection.keys(
            KEYS.training_set), raise_on_error=False)
    assert result.success
    store = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}[KEYS.feature_store]
    assert store["materialized_windows"].value >= 3
    # Every entity of every online view, not a sample: its online row is its latest offline row.
    check = judge(loan_check("online_matches_offline"), config=feature_checks.SkewCheckConfig(sample_size=100_000),
                  feast=resources["feast"])
    assert check.passed and check.metadata["entities_compared"].value > 300

