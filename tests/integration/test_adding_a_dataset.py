"""docs/adding-a-dataset.md, followed step by step: a dataset in two files, through the whole graph.

Bank clients called about a term deposit: a string id ``client_ref``, the event
time ``contacted_at``, a CSV whose target ``subscribed`` is ``yes``/``no``, the
protected attribute ``marital_status`` and a phone number as personal data. Its
features are its own columns, so the user writes only the two files the doc asks
for: the schema (proposed by ``infer-schema``, reviewed) and the declaration. No dbt
model and no Feast file: the mart and the Feast view are derived from the
declaration. The declaration is loaded by Dagster's own component loader (a
defs-folder sandbox); no generic stage code is edited or told about this dataset.
The use case goes from landing files to a served model, is asked by callers, and
its inference log is ingested and its drift reported.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from platform_assets import settings
from platform_assets.cli import main as cli
from platform_assets.keys import for_use_case
from tests.conftest import SERVING_PYTHON, day_range_tags
from tests.integration.user_use_case import sandboxed_use_case

JOBS = ("admin", "technician", "services", "retired", "student")
DAYS, ROWS_PER_DAY = 24, 250

# Step 3 of the doc: the declaration (defs.yaml), the second and last file. yes/no are quoted: YAML reads them
# as booleans. No marts: the features are the rows' own columns, the mart and the Feast view derived.
DECLARATION = """\
type: platform_assets.components.UseCaseComponent
attributes:
  name: term_deposit
  source:
    name: clients
    file_prefix: clients
    landing_folder: clients
    schema: term_deposit_schema:ClientSchema
    key: client_ref
    event_time: contacted_at
    label: subscribed
    positive_label: "yes"
    negative_label: "no"
    pii: [phone]
    protected: [marital_status]
  protected_attribute: marital_status
  gate:
    min_roc_auc: 0.65
"""


def client_calls(start: dt.date, days: int, rows_per_day: int, seed: int) -> dict[dt.date, pd.DataFrame]:
    """One CSV's rows per day; whether a client subscribes depends on balance, calls and job, not marital status."""
    rng = np.random.default_rng(seed)
    out, n = {}, 0
    for d in range(days):
        day, k = start + dt.timedelta(days=d), rows_per_day
        balance = rng.gamma(2.0, 900.0, k).round(2)
        calls = rng.integers(1, 12, k)
        job = rng.choice(JOBS, k)
        z = -0.3 + 0.0012 * balance - 0.4 * calls + np.where(job == "retired", 1.5, 0) + np.where(job == "student", 1.0, 0)
        out[day] = pd.DataFrame({
            "client_ref": [f"C{n + i:07d}" for i in range(k)],
            "contacted_at": [(dt.datetime.combine(day, dt.time(8)) + dt.timedelta(minutes=int(m))).isoformat()
                             for m in rng.integers(0, 600, k)],
            "age_years": rng.integers(18, 90, k),
            "balance_eur": balance,
            "campaign_calls": calls,
            "job_category": job,
            "marital_status": rng.choice(["married", "single", "divorced"], k, p=[0.5, 0.3, 0.2]),
            "phone": [f"+31 6 {v}" for v in rng.integers(10**7, 10**8, k)],
            "subscribed": np.where(rng.random(k) < 1 / (1 + np.exp(-z)), "yes", "no"),
        })
        n += k
    return out


@pytest.fixture(scope="module")
def two_file_dataset(tmp_path_factory):
    """Every step of the doc, then the jobs a user runs: ingest the days, build up to serving, send traffic, ingest
    the inference log and report drift."""
    if not SERVING_PYTHON.exists():
        pytest.skip(f"serving environment missing at {SERVING_PYTHON}: run `make install`")
    from platform_assets.deploy.release import stop_serving
    from platform_assets.traffic import send_requests

    tmp = tmp_path_factory.mktemp("two_file_dataset")
    root, code = tmp / "home", tmp / "user_code"
    code.mkdir()
    start = dt.date.today() - dt.timedelta(days=DAYS + 1)
    calls = client_calls(start, DAYS, ROWS_PER_DAY, seed=11)

    # Step 1: a sample file. Step 2: the proposed schema, reviewed (the observed ranges are the sample's).
    sample = tmp / "clients_sample.csv"
    pd.concat(calls.values()).to_csv(sample, index=False)
    schema = code / "term_deposit_schema.py"
    assert cli(["infer-schema", str(sample), "--name", "ClientSchema", "--out", str(schema)]) == 0
    assert "subscribed: Series[str] = pa.Field(isin=['no', 'yes']" in schema.read_text()

    # Planted faults in the landing files: a label that is neither value, a negative balance, a missing id.
    landing = settings.paths(root).landing / "clients"
    landing.mkdir(parents=True)
    calls[start].loc[0, "subscribed"] = "maybe"
    calls[start].loc[1, "balance_eur"] = -5.0
    calls[start].loc[2, "client_ref"] = None
    for day, frame in calls.items():
        frame.to_csv(landing / f"clients_{day.isoformat()}.csv", index=False)

    # Step 3: the declaration. No dbt model, no Feast file.
    with sandboxed_use_case(tmp, root, code, DECLARATION, {}, {}) as sandbox:
        # Step 4: the runs, as `make demo` does them for the shipped use cases.
        use_case, run, paths = sandbox.use_case, sandbox.run, sandbox.paths
        last = (start + dt.timedelta(days=DAYS - 1)).isoformat()
        results = {"ingest_days": run("ingest_days", tags=day_range_tags(start.isoformat(), last)),
                   "features_to_serving": run("features_to_serving")}
        deployment_file = paths.serving / "deployment.json"
        deployment = json.loads(deployment_file.read_text()) if deployment_file.exists() else None
        traffic = today = None
        try:
            if deployment:
                # Step 5: the served model, asked as callers ask (the row's fields, never the label).
                with duckdb.connect(str(settings.paths(root).warehouse), read_only=True) as con:
                    today = con.execute("SELECT * FROM validated.clients WHERE _partition = ?", [last]).df()
                traffic = send_requests(deployment["url"], today, use_case.source, concurrency=4)
        finally:
            stop_serving(paths.serving)
        if traffic is not None:  # the label is in the row: the day's log is labelled as it is ingested
            results["inference_days"] = run("inference_days", partition_key=last)
            results["drift"] = run("drift", run_config={"ops": {"term_deposit__monitor__drift_report": {"config": {
                "min_labelled_rows": 50, "min_labelled_rows_per_day": 50}}}})
        registry = sandbox.defs.resources["feast"].store()
        views = {v.name: sorted(f.name for f in v.features) for v in registry.list_feature_views()}
        yield {"root": root, "instance": sandbox.instance, "results": results, "use_case": use_case,
               "rows": sum(len(f) for f in calls.values()), "deployment": deployment, "traffic": traffic,
               "today": today, "paths": paths, "written": {"schema": schema.read_text(), "defs.yaml": DECLARATION},
               "views": views}


def test_two_hand_written_files_take_the_dataset_from_landing_files_to_a_drift_report(two_file_dataset):
    results = two_file_dataset["results"]
    failed = {job: [e.check_name for e in r.get_asset_check_evaluations() if not e.passed]
              for job, r in results.items()}
    errors = {job: [e.event_specific_data.error.message[:500] for e in r.all_events
                    if e.event_type_value == "STEP_FAILURE"] for job, r in results.items() if not r.success}
    assert all(r.success for r in results.values()) and set(results) == {
        "ingest_days", "features_to_serving", "inference_days", "drift"}, (errors, failed)
    assert failed == {job: [] for job in results}  # no check failed or warned either
    keys = for_use_case(two_file_dataset["use_case"])
    materialized = {e.asset_key for r in results.values() for e in r.get_asset_materialization_events()}
    assert {keys.raw, keys.validated, keys.quarantined, keys.feature("fct_term_deposit_features"), keys.feature_store,
            keys.training_set, keys.model, keys.eval_report, keys.champion, keys.deployment, keys.inference_log,
            keys.labelled_predictions, keys.drift_report} <= materialized
    # What the declaration left out follows from it: the model's name, the feature service, the view.
    assert two_file_dataset["deployment"]["model_name"] == "term-deposit"
    assert two_file_dataset["views"]["term_deposit_features"] == [
        "age_years", "balance_eur", "campaign_calls", "job_category"]
    # Under 50 hand-written lines in the two files (the schema as infer-schema proposed it, reviewed).
    lines = {name: len([line for line in text.splitlines() if line.strip()])
             for name, text in two_file_dataset["written"].items()}
    assert sum(lines.values()) < 50, lines


def test_every_row_is_counted_the_planted_faults_quarantined_and_the_label_written_as_1_0(two_file_dataset):
    with duckdb.connect(str(settings.paths(two_file_dataset["root"]).warehouse), read_only=True) as con:
        raw, valid, quarantined, mart = (con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (
            "raw.clients", "validated.clients", "quarantine.clients", "features.fct_term_deposit_features"))
        reasons = [r[0] for r in con.execute("SELECT _quarantine_reasons FROM quarantine.clients").fetchall()]
        labels = con.execute("SELECT DISTINCT subscribed FROM validated.clients ORDER BY 1").fetchall()
        leaked = con.execute("SELECT count(*) FROM validated.clients WHERE phone LIKE '+31%'").fetchone()[0]
        mart_columns = [r[0] for r in con.execute("DESCRIBE features.fct_term_deposit_features").fetchall()]
    assert raw == two_file_dataset["rows"] == valid + quarantined == valid + 3
    assert mart == valid  # every valid row is a row of features
    assert sorted(reasons) == ["balance_eur: greater_than_or_equal_to(0) (got -5.0)", "client_ref: missing",
                               "subscribed: isin(['no', 'yes']) (got 'maybe')"]
    assert labels == [(0,), (1,)]
    assert leaked == 0  # the phone numbers are masked
    # Neither the label, the personal data nor the protected attribute is a feature.
    assert mart_columns == ["client_ref", "event_timestamp", "age_years", "balance_eur", "campaign_calls",
                            "job_category"]


def test_the_report_is_headed_by_its_own_protected_attribute(two_file_dataset):
    keys = for_use_case(two_file_dataset["use_case"])
    event = two_file_dataset["instance"].get_latest_materialization_event(keys.eval_report)
    metadata = event.asset_materialization.metadata
    assert "## Fairness slices of the challenger (marital_status)" in metadata["report"].value
    challenger = metadata["evaluation"].value["models"]["challenger"]
    assert set(challenger["fairness"]["slices"]) == {"married", "single", "divorced"}
    assert challenger["metrics"]["roc_auc"] > 0.65


def test_the_served_predictions_are_the_offline_model_s_and_the_drift_report_reads_them(two_file_dataset):
    from platform_assets.train.network import load_bundle

    traffic, today = two_file_dataset["traffic"], two_file_dataset["today"]
    assert traffic.answered == traffic.sent == len(today) and not traffic.errors
    bundle = load_bundle(two_file_dataset["deployment"]["bundle"])
    inputs = [*bundle.preprocessor.numeric, *bundle.preprocessor.categorical]
    assert sorted(inputs) == ["age_years", "balance_eur", "campaign_calls", "job_category"]
    offline = bundle.predict_proba({c: today[c].to_numpy() for c in inputs})
    served = np.array([traffic.probabilities[k] for k in today["client_ref"]])
    np.testing.assert_allclose(served, offline, atol=1e-6)
    [drift] = two_file_dataset["results"]["drift"].asset_materializations_for_node("term_deposit__monitor__drift_report")
    assert drift.metadata["current_rows"].value == len(today)
    assert set(drift.metadata["drift_scores"].value) == {*inputs, "probability"}
    assert drift.metadata["labelled_rows"].value == len(today)
