"""Lineage names exactly what a model was trained on: the window's files, with their hashes when it was built.

A training set built on a window (``since``), a model trained on it, then one day of the window ingested
again with other content: ``python -m platform_assets lineage --model`` still names the files and hashes
the model saw, says which file changed since, and a rebuilt training set records the new one.
"""

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys

import dagster as dg
import duckdb
import pandas as pd
import pytest

from platform_assets import definitions, settings
from platform_assets.features.training_set import read_manifest
from platform_assets.lineage import trace_model
from tests.conftest import PROJECT_ROOT, ingest_days, loan, loan_asset, loan_keys, loan_node, loan_paths, \
    write_sample_landing

USE_CASE = loan()
KEYS = loan_keys()
DAYS = 30
START = dt.date.today() - dt.timedelta(days=DAYS)
SINCE = (START + dt.timedelta(days=12)).isoformat()
CHANGED_DAY = (START + dt.timedelta(days=15)).isoformat()
# One small candidate: what the model is does not matter here, only what it was trained on.
TRAIN = {"candidates": [{"hidden": [8], "dropout": 0.0, "learning_rate": 0.01}], "max_epochs": 3, "patience": 1}


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _landing_file(root, day: str):
    return settings.paths(root).landing / USE_CASE.source.landing_folder / f"{USE_CASE.source.file_prefix}_{day}.parquet"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """30 days ingested; the training set built from day 12 on, and a model trained on it."""
    root = tmp_path_factory.mktemp("lineage_home")
    write_sample_landing(root, days=DAYS, rows_per_day=80, start=START)
    hashes = {day: _sha256(_landing_file(root, day))
              for day in ((START + dt.timedelta(days=d)).isoformat() for d in range(DAYS))}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLATFORM_HOME", str(root))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        resources = definitions.embedded_resources(root)
        (root / "dagster_home").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
            assert ingest_days(resources, START.isoformat(), (START + dt.timedelta(days=DAYS - 1)).isoformat(),
                               instance).success
            assets = [loan_asset("raw", KEYS.source), loan_asset("validated", KEYS.source),
                      loan_asset("features", "stg_applications"), loan_asset("features", "feature_store"),
                      loan_asset("features", "training_set"), loan_asset("train", "model")]
            config = {"ops": {loan_node("features", "training_set"): {"config": {"since": SINCE, "min_rows": 100}},
                              loan_node("train", "model"): {"config": TRAIN}}}
            result = dg.materialize(
                assets, resources=resources, instance=instance, run_config=config, raise_on_error=False,
                selection=dg.AssetSelection.key_prefixes([USE_CASE.name, "features"]) | dg.AssetSelection.assets(KEYS.model))
            assert result.success
            version = str(result.asset_materializations_for_node(loan_node("train", "model"))[0]
                          .metadata["model_version"].value)
            yield {"root": root, "resources": resources, "instance": instance, "assets": assets, "version": version,
                   "hashes": hashes, "training_rows": len(pd.read_parquet(loan_paths(root).training_set))}


def _labelled_days_in_window(root) -> set[str]:
    """The validated days from SINCE on that hold a row whose label the training set could know."""
    with duckdb.connect(str(settings.paths(root).warehouse), read_only=True) as con:
        return {r[0] for r in con.execute(
            f"SELECT DISTINCT _partition FROM {USE_CASE.source.validated_table} "
            f"WHERE {USE_CASE.source.event_time} >= ? AND {USE_CASE.label} IS NOT NULL", [SINCE]).fetchall()}


def test_the_model_names_the_window_files_with_the_hashes_they_had(trained):
    root = trained["root"]
    training = trace_model(settings.paths(root), USE_CASE.model_name, trained["version"])["training_data"]
    assert training["since"] == SINCE and training["rows"] == trained["training_rows"]
    files = training["landing_files"]
    days = {f["partition"] for f in files}
    assert min(days) >= SINCE, "a day before the window is named"
    # Days whose labels were known by the newest event: the window's days, less its newest ones.
    assert days <= _labelled_days_in_window(root) and len(days) >= 10
    assert sum(f["rows_used"] for f in files) == trained["training_rows"]
    # The hashes are those of the files on disk, computed here from their bytes.
    assert all(f["sha256"] == trained["hashes"][f["partition"]] and f["now"] == "unchanged" for f in files)
    assert all(f["path"].endswith(f"_{f['partition']}.parquet") for f in files)


def test_a_day_ingested_again_shows_as_changed_and_a_rebuild_records_the_new_file(trained):
    root, resources, instance = trained["root"], trained["resources"], trained["instance"]
    path = _landing_file(root, CHANGED_DAY)
    day = pd.read_parquet(path)
    key = USE_CASE.source.key
    trained_on = set(pd.read_parquet(loan_paths(root).training_set, columns=[key])[key])
    dropped = day[day[key].isin(trained_on)].head(5)[key]
    assert len(dropped) == 5
    day[~day[key].isin(dropped)].to_parquet(path, index=False)  # delivered again without five trained-on rows
    new_hash = _sha256(path)
    assert new_hash != trained["hashes"][CHANGED_DAY]
    assert ingest_days(resources, CHANGED_DAY, CHANGED_DAY, instance).success

    training = trace_model(settings.paths(root), USE_CASE.model_name, trained["version"])["training_data"]
    (changed,) = [f for f in training["landing_files"] if f["partition"] == CHANGED_DAY]
    assert changed["sha256"] == trained["hashes"][CHANGED_DAY], "the model's record must keep the hash it trained on"
    assert changed["now"] == f"changed since: sha256 {new_hash}"
    assert all(f["now"] == "unchanged" for f in training["landing_files"] if f["partition"] != CHANGED_DAY)

    # The CLI shows the same record.
    env = {**os.environ, "PLATFORM_HOME": str(root)}
    shown = subprocess.run([sys.executable, "-m", "platform_assets", "lineage", "--model", USE_CASE.model_name,
                            "--version", trained["version"]], cwd=PROJECT_ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["training_data"]["landing_files"] == training["landing_files"]

    # A training set built now records the file as it is now, with the rows it holds now.
    rebuilt = dg.materialize(
        trained["assets"], resources=resources, instance=instance, raise_on_error=False,
        run_config={"ops": {loan_node("features", "training_set"): {"config": {"min_rows": 100}}}},
        selection=dg.AssetSelection.key_prefixes([USE_CASE.name, "features"]))
    assert rebuilt.success
    manifest = read_manifest(loan_paths(root).training_set)
    assert manifest["since"] == SINCE  # the window of the previous build is kept
    (now,) = [f for f in manifest["files"] if f["role"] == "rows" and f["partition"] == CHANGED_DAY]
    assert now["sha256"] == new_hash and now["rows_used"] == changed["rows_used"] - 5
    assert sum(f["rows_used"] for f in manifest["files"] if f["role"] == "rows") == manifest["rows"] == len(
        pd.read_parquet(loan_paths(root).training_set))


def test_lineage_refuses_an_unknown_model_and_a_half_given_one(trained):
    env = {**os.environ, "PLATFORM_HOME": str(trained["root"])}
    for args, message in ((["--model", "nobody", "--version", "1"], "no declared use case registers"),
                          (["--model", USE_CASE.model_name], "--model NAME --version N")):
        shown = subprocess.run([sys.executable, "-m", "platform_assets", "lineage", *args], cwd=PROJECT_ROOT,
                               env=env, capture_output=True, text=True, timeout=120)
        assert shown.returncode != 0 and message in shown.stderr


def test_rows_validated_after_the_feature_build_are_left_out_counted_and_never_nan(trained):
    """A day delivered again with other applications, validated but not yet built into features: a training
    set built now leaves those rows out and says how many (a NaN would make the network's loss NaN)."""
    root, resources, instance = trained["root"], trained["resources"], trained["instance"]
    day = (START + dt.timedelta(days=20)).isoformat()
    write_sample_landing(root, days=1, rows_per_day=80, start=dt.date.fromisoformat(day), seed=99)
    assert ingest_days(resources, day, day, instance).success
    result = dg.materialize(
        trained["assets"], resources=resources, instance=instance, raise_on_error=False,
        run_config={"ops": {loan_node("features", "training_set"): {"config": {"min_rows": 100}}}},
        selection=dg.AssetSelection.assets(KEYS.training_set))
    assert result.success
    meta = result.asset_materializations_for_node(loan_node("features", "training_set"))[0].metadata
    training = pd.read_parquet(loan_paths(root).training_set)
    features = [c for c in training.columns if c not in USE_CASE.never_features]
    assert not training[features].isna().any().any()
    # The day's labelled rows are the ones left out: none of its new applications has features yet.
    key = USE_CASE.source.key
    new_ids = set(pd.read_parquet(_landing_file(root, day))[key])
    assert meta["rows_without_features"].value > 0 and not new_ids & set(training[key])
    manifest = read_manifest(loan_paths(root).training_set)
    assert sum(f["rows_used"] for f in manifest["files"] if f["role"] == "rows") == len(training) == manifest["rows"]
