"""docs/adding-a-dataset.md, followed step by step with a dataset shaped unlike both shipped ones.

Bank clients called about a term deposit: a string id ``client_ref``, the event
time ``contacted_at``, a CSV whose target ``subscribed`` is ``yes``/``no``, the
protected attribute ``marital_status`` and a phone number as personal data. The
user writes only what the doc asks for (a sample, the reviewed schema module,
the declaration, a dbt model and a Feast view) in folders of their own: the
dbt project and the Feast repository are copies with one folder and one file
added, named by ``PLATFORM_DBT_PROJECT_DIR`` and ``PLATFORM_FEATURE_REPO``;
the declaration is loaded by Dagster's own component loader (a defs-folder sandbox).
No generic stage code is edited or told about this dataset.
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

# Step 3 of the doc: the declaration (defs.yaml). yes/no are quoted: YAML reads them as booleans.
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
  label: subscribed
  entity_keys: [client_ref]
  protected_attribute: marital_status
  model_name: term-deposit
  feature_service: term_deposit_model
  marts: [fct_client_features]
  gate:
    min_roc_auc: 0.65
"""

# Step 4: the dbt models, in the use case's own folder models/term_deposit/.
DBT_FILES = {
    "sources.yml": """\
        version: 2
        sources:
          - name: validated_clients
            schema: validated
            tables:
              - name: clients
        """,
    "stg_clients.sql": """\
        select client_ref, cast(contacted_at as timestamp) as contacted_at, age_years, balance_eur,
               campaign_calls, job_category, marital_status, subscribed
        from {{ source('validated_clients', 'clients') }}
        """,
    "fct_client_features.sql": """\
        select client_ref, contacted_at as event_timestamp, cast(age_years as double) as age_years,
               balance_eur, cast(campaign_calls as double) as campaign_calls, job_category
        from {{ ref('stg_clients') }}
        """,
    "models.yml": """\
        version: 2
        models:
          - name: fct_client_features
            columns:
              - name: client_ref
                data_tests: [not_null, unique]
              - name: balance_eur
                data_tests: [not_null]
        """,
}

# Step 5: the Feast entity, the mart's Parquet export as its source, the view and the feature service.
FEAST_FILE = '''\
import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, String

DATA_DIR = Path(os.environ["PLATFORM_HOME"]) / "feast" / "data"

client = Entity(name="client", join_keys=["client_ref"], value_type=ValueType.STRING)

client_features = FeatureView(
    name="client_features",
    entities=[client],
    ttl=timedelta(days=2),
    schema=[Field(name="age_years", dtype=Float64), Field(name="balance_eur", dtype=Float64),
            Field(name="campaign_calls", dtype=Float64), Field(name="job_category", dtype=String)],
    online=False,
    source=FileSource(name="fct_client_features", path=str(DATA_DIR / "fct_client_features.parquet"),
                      timestamp_field="event_timestamp"),
    tags={"dbt_model": "fct_client_features"},
)

term_deposit_model = FeatureService(name="term_deposit_model", features=[client_features])
'''


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
def third_dataset(tmp_path_factory):
    """Every step of the doc, then the jobs a user runs: ingest the days, build up to serving, send traffic."""
    if not SERVING_PYTHON.exists():
        pytest.skip(f"serving environment missing at {SERVING_PYTHON}: run `make install`")
    from platform_assets.deploy.release import stop_serving
    from platform_assets.traffic import send_requests

    tmp = tmp_path_factory.mktemp("third_dataset")
    root, code = tmp / "home", tmp / "user_code"
    code.mkdir()
    start = dt.date.today() - dt.timedelta(days=DAYS + 1)
    calls = client_calls(start, DAYS, ROWS_PER_DAY, seed=11)

    # Step 1: a sample file. Step 2: the proposed schema, reviewed: the observed ranges are the sample's.
    sample = tmp / "clients_sample.csv"
    pd.concat(calls.values()).to_csv(sample, index=False)
    assert cli(["infer-schema", str(sample), "--name", "ClientSchema", "--out", str(code / "term_deposit_schema.py")]) == 0
    proposed = (code / "term_deposit_schema.py").read_text()
    assert "subscribed: Series[str] = pa.Field(isin=['no', 'yes']" in proposed

    # Planted faults in the landing files: a label that is neither value, a negative balance, a missing id.
    landing = settings.paths(root).landing / "clients"
    landing.mkdir(parents=True)
    calls[start].loc[0, "subscribed"] = "maybe"
    calls[start].loc[1, "balance_eur"] = -5.0
    calls[start].loc[2, "client_ref"] = None
    for day, frame in calls.items():
        frame.to_csv(landing / f"clients_{day.isoformat()}.csv", index=False)

    # Steps 3 to 5: the declaration, the user's dbt models and Feast file in their own copies of the projects.
    with sandboxed_use_case(tmp, root, code, DECLARATION, {"term_deposit": DBT_FILES},
                            {"term_deposit.py": FEAST_FILE}) as sandbox:
        # Step 6: the runs, as `make demo` does them for the shipped use cases.
        use_case, instance, run = sandbox.use_case, sandbox.instance, sandbox.run
        last = (start + dt.timedelta(days=DAYS - 1)).isoformat()
        results = {"ingest_days": run("ingest_days", tags=day_range_tags(start.isoformat(), last)),
                   "features_to_serving": run("features_to_serving")}
        paths = sandbox.paths
        deployment_file = paths.serving / "deployment.json"
        deployment = json.loads(deployment_file.read_text()) if deployment_file.exists() else None
        traffic = today = None
        try:
            if deployment:
                # Step 7: the served model, asked as callers ask (the row's fields, never the label).
                with duckdb.connect(str(settings.paths(root).warehouse), read_only=True) as con:
                    today = con.execute("SELECT * FROM validated.clients WHERE _partition = ?", [last]).df()
                traffic = send_requests(deployment["url"], today, use_case.source, concurrency=4)
        finally:
            stop_serving(paths.serving)
        yield {"root": root, "instance": instance, "results": results, "use_case": use_case,
               "rows": sum(len(f) for f in calls.values()), "deployment": deployment, "traffic": traffic,
               "today": today, "paths": paths}


def test_the_third_dataset_is_ingested_validated_trained_evaluated_and_served(third_dataset):
    results = third_dataset["results"]
    failed = {job: [e.check_name for e in r.get_asset_check_evaluations() if not e.passed]
              for job, r in results.items()}
    assert all(r.success for r in results.values()), failed
    keys = for_use_case(third_dataset["use_case"])
    materialized = {e.asset_key for r in results.values() for e in r.get_asset_materialization_events()}
    assert {keys.raw, keys.validated, keys.quarantined, keys.feature("fct_client_features"), keys.feature_store,
            keys.training_set, keys.model, keys.eval_report, keys.champion, keys.deployment} <= materialized
    assert third_dataset["deployment"]["model_name"] == "term-deposit"


def test_every_row_is_counted_the_planted_faults_quarantined_and_the_label_written_as_1_0(third_dataset):
    with duckdb.connect(str(settings.paths(third_dataset["root"]).warehouse), read_only=True) as con:
        raw, valid, quarantined = (con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (
            "raw.clients", "validated.clients", "quarantine.clients"))
        reasons = [r[0] for r in con.execute("SELECT _quarantine_reasons FROM quarantine.clients").fetchall()]
        labels = con.execute("SELECT DISTINCT subscribed FROM validated.clients ORDER BY 1").fetchall()
        leaked = con.execute("SELECT count(*) FROM validated.clients WHERE phone LIKE '+31%'").fetchone()[0]
    assert raw == third_dataset["rows"] == valid + quarantined == valid + 3
    assert sorted(reasons) == ["balance_eur: greater_than_or_equal_to(0) (got -5.0)", "client_ref: missing",
                               "subscribed: isin(['no', 'yes']) (got 'maybe')"]
    assert labels == [(0,), (1,)]
    assert leaked == 0  # the phone numbers are masked


def test_the_report_is_headed_by_its_own_protected_attribute(third_dataset):
    keys = for_use_case(third_dataset["use_case"])
    metadata = third_dataset["instance"].get_latest_materialization_event(keys.eval_report).asset_materialization.metadata
    assert "## Fairness slices of the challenger (marital_status)" in metadata["report"].value
    challenger = metadata["evaluation"].value["models"]["challenger"]
    assert set(challenger["fairness"]["slices"]) == {"married", "single", "divorced"}
    assert challenger["metrics"]["roc_auc"] > 0.65


def test_the_served_predictions_are_the_offline_model_s(third_dataset):
    from platform_assets.train.network import load_bundle

    traffic, today = third_dataset["traffic"], third_dataset["today"]
    assert traffic.answered == traffic.sent == len(today) and not traffic.errors
    bundle = load_bundle(third_dataset["deployment"]["bundle"])
    inputs = [*bundle.preprocessor.numeric, *bundle.preprocessor.categorical]
    assert sorted(inputs) == ["age_years", "balance_eur", "campaign_calls", "job_category"]
    offline = bundle.predict_proba({c: today[c].to_numpy() for c in inputs})
    served = np.array([traffic.probabilities[k] for k in today["client_ref"]])
    np.testing.assert_allclose(served, offline, atol=1e-6)
