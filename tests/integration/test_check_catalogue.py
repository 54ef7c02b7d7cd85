"""The catalogue of checks: every asset check says what evidence it reads that its asset did not decide,
and names the test that plants bad data and sees it fail.

The test loads the code location (both shipped use cases and their dbt tests) and the docs' example
dataset (``docs/adding-a-dataset.md``'s term-deposit declaration), enumerates every asset check, and
requires a catalogue entry for each, whose proving test exists. A new check without one fails here.

``PENDING`` lists the checks still being made trustworthy (issue 22, by item): each must leave it
with its entry in ``CATALOGUE``. It is empty when the issue is done.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

# Check name -> (the evidence it reads that its asset did not decide, the test that makes it fail or warn).
CATALOGUE: dict[str, tuple[str, str]] = {
    "landing_files_found_were_read": (
        "the landing folder listed again now, against the files the raw asset recorded",
        "tests/integration/test_ingest_checks.py::test_a_file_found_but_not_recorded_fails"),
    "landing_files_read_whole": (
        "each recorded file's rows recounted from its bytes, and its hash now",
        "tests/integration/test_ingest_checks.py::test_files_read_whole_fails_on_a_missing_row_and_on_a_changed_file"),
    "landing_files_all_accepted": (
        "the files in the landing folder that match no accepted name or format",
        "tests/integration/test_bad_inputs.py::test_ingest_and_validate_the_whole_corpus_beside_good_files"),
    "latest_day_fresh": (
        "the end of the newest ingested day against the clock",
        "tests/integration/test_ingest_checks.py::test_latest_day_fresh_warns_on_a_stale_newest_day_and_holds_on_yesterday"),
    "validation_conserves_rows": (
        "raw rows recounted per day against validated plus quarantined rows",
        "tests/integration/test_validation_checks.py::test_conservation_check_fails_on_a_lost_doubled_or_stale_row"),
    "quarantine_rate_under_threshold": (
        "the quarantined share of the day's raw rows, counted in the warehouse",
        "tests/integration/test_bad_inputs.py::test_a_day_whose_quarantine_has_no_or_mixed_personal_data_loses_no_row"),
    "pii_is_masked": (
        "every personal-data cell matched against the token pattern, and reasons searched for raw values",
        "tests/integration/test_validation_checks.py::test_pii_check_fails_on_a_clear_value_in_a_masked_column"),
    "online_matches_offline": (
        "the online store's answer for sampled entities against the newest row of each view's own Parquet source",
        "tests/integration/test_feature_store.py::test_skew_check_fails_when_one_online_value_differs_in_the_last_digit"),
    "features_are_fresh": (
        "the newest exported feature against the newest validated row, and the online store's materialized range",
        "tests/integration/test_feature_store.py::test_freshness_check_warns_when_newer_features_are_not_online"),
    "training_set_has_no_leakage": (
        "each row's features against an independent point-in-time join (merge_asof) over the views' own sources",
        "tests/integration/test_feature_store.py::test_leakage_check_fails_when_a_later_value_reaches_a_row"),
    "model_loss_converged": (
        "the test loss recomputed from the logged model against the base-rate predictor's",
        "tests/integration/test_training_gate.py::"
        "test_loss_check_recomputes_the_loss_and_fails_when_the_model_is_no_better_than_the_base_rate"),
    "model_tracked_and_registered": (
        "Dagster's recorded data version of each upstream asset against the hash of the bytes training read, "
        "and the registered weights downloaded and re-hashed against the version's tag",
        "tests/integration/test_training_gate.py::test_lineage_check_fails_on_a_missing_data_version_and_on_other_bytes"),
    "eval_gate_passed": (
        "the scores the evaluation recorded, judged against the gate's bounds, with the registry's aliases and "
        "rollbacks read now (a stale evaluation, a rolled-back version or its weights fail); it writes nothing",
        "tests/integration/test_training_gate.py::test_gate_check_fails_on_an_evaluation_the_registry_moved_past"),
    "champion_passed_the_gate": (
        "the registry's champion alias read now, and the gate check's verdict on that version as Dagster recorded "
        "it (not MLflow tags); run every 15 minutes on its own (the champion audit schedule)",
        "tests/integration/test_training_gate.py::test_champion_check_fails_when_the_alias_is_moved_by_hand"),
    "every_row_scored_once": (
        "the day's valid rows in the warehouse against the batch predictions, row by row",
        "tests/unit/test_batch_scoring.py::test_a_planted_gap_fails_the_check"),
    "served_predictions_match_offline": (
        "the newest day's rows sent with ids only (the server looks its features up online) against the batch "
        "scores of the same rows from Feast's point-in-time join of the dbt marts",
        "tests/e2e/test_whole_graph.py::"
        "test_served_predictions_check_goes_through_the_lookup_and_fails_on_a_stale_online_store"),
    "served_features_match_sdk": (
        "the feature server's HTTP answer against the Feast SDK's online read for the same entities",
        "tests/unit/test_serving.py::test_served_features_that_differ_from_the_sdk_are_counted"),
    "inference_log_lines_accounted_for": (
        "the server's log files recounted from their bytes against rows held plus lines rejected",
        "tests/integration/test_monitor_stage.py::"
        "test_a_day_of_log_files_is_ingested_whole_and_the_check_fails_when_a_line_goes_missing"),
    "outcome_rows_accounted_for": (
        "the outcome files recounted from their bytes against outcomes held plus rows rejected",
        "tests/integration/test_monitor_stage.py::"
        "test_an_outcome_file_is_ingested_whole_and_the_check_fails_when_a_row_goes_missing"),
    "served_features_match_point_in_time": (
        "the features logged with each served request against Feast's point-in-time retrieval for its row",
        "tests/integration/test_monitor_stage.py::test_skew_check_fails_on_a_served_value_that_differs_from_the_point_in_time_one"),
    "labelled_predictions_are_served_rows_with_their_outcome": (
        "the labelled rows counted in the warehouse against the log's traffic rows, their outcomes' times and values",
        "tests/integration/test_monitor_stage.py::test_labelled_predictions_join_only_outcomes_known_by_now"),
    # dbt's tests, by kind: its SQL over the built models (dbt's own code, not the models').
    "dbt:not_null": ("the built column's nulls, counted by dbt", "tests/integration/test_dbt_features.py::test_each_kind_of_dbt_test_fails_on_its_planted_fault"),
    "dbt:unique": ("the built column's repeated values, counted by dbt", "tests/integration/test_dbt_features.py::test_each_kind_of_dbt_test_fails_on_its_planted_fault"),
    "dbt:accepted_values": ("the built column's values outside the declared levels", "tests/integration/test_dbt_features.py::test_each_kind_of_dbt_test_fails_on_its_planted_fault"),
    "dbt:non_negative": ("the built column's negative values (tests/generic/non_negative.sql)", "tests/integration/test_dbt_features.py::test_each_kind_of_dbt_test_fails_on_its_planted_fault"),
    "dbt:relationships": ("history rows whose application is not in the application features", "tests/integration/test_dbt_features.py::test_each_kind_of_dbt_test_fails_on_its_planted_fault"),
    "dbt:assert_history_counts_bounded": ("each row's 30/90/365-day counts and sums against each other", "tests/integration/test_dbt_features.py::test_each_kind_of_dbt_test_fails_on_its_planted_fault"),
    "dbt:assert_history_sees_only_the_past": (
        "the 90-day history recounted by brute force from the staging rows", "tests/integration/test_dbt_features.py::test_each_kind_of_dbt_test_fails_on_its_planted_fault"),
    "drift_share_under_threshold": (
        "Evidently's per-column drift of served inputs against the training window",
        "tests/integration/test_monitor_stage.py::test_drift_and_quality_checks_judge_the_report_figures"),
    "quality_above_bound": (
        "served probabilities scored against outcomes that arrived later, bounded by the model's recorded test "
        "AUC and the window's base-rate Brier score",
        "tests/integration/test_monitor_stage.py::test_drift_and_quality_checks_judge_the_report_figures"),
}

# Check name (or dbt test kind) -> what is still wrong with it (issue 22).
PENDING: dict[str, str] = {
}


def _check_names(defs) -> set[str]:
    """The catalogue names of every asset check in ``defs``: a platform check's own name, a dbt test's kind
    (``dbt:not_null``, ``dbt:assert_history_sees_only_the_past``, ...)."""
    platform = {key.name for checks in defs.asset_checks for key in checks.check_keys}
    return {name if name in platform else _dbt_kind(name)
            for name in (key.name for key in defs.resolve_asset_graph().asset_check_keys)}


def _dbt_kind(name: str) -> str:
    for kind in ("not_null", "non_negative", "unique", "accepted_values", "relationships"):
        if name.startswith(f"{kind}_"):
            return f"dbt:{kind}"
    return f"dbt:{name}"  # a singular test (tests/*.sql)


def _every_check() -> set[str]:
    from platform_assets.definitions import defs

    return _check_names(defs)


def _example_checks(tmp_path) -> set[str]:
    """The checks of the docs' example dataset, declared as docs/adding-a-dataset.md says."""
    import yaml

    from platform_assets.build import build_use_case_definitions
    from platform_assets.declarations import use_case_from_dict
    from tests.integration.test_adding_a_dataset import DECLARATION

    attributes = yaml.safe_load(DECLARATION)["attributes"]
    defs = build_use_case_definitions(use_case_from_dict(attributes, "docs example"))
    # The platform's checks of the example; its dbt tests are the user's own (their copy of the project).
    return {key.name for checks in defs.asset_checks for key in checks.check_keys}


def _test_exists(node: str) -> bool:
    path, _, name = node.partition("::")
    file = PROJECT_ROOT / path
    if not file.is_file():
        return False
    tree = ast.parse(file.read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body)


def test_every_check_is_in_the_catalogue_or_pending_with_its_reason(tmp_path):
    found = _every_check()
    try:
        found |= _example_checks(tmp_path)
    except Exception as exc:  # noqa: BLE001 - the example needs its own schema module; say so, do not hide it
        pytest.fail(f"the docs' example dataset did not build: {type(exc).__name__}: {exc}")
    listed = set(CATALOGUE) | set(PENDING)
    assert not (set(CATALOGUE) & set(PENDING)), "a check is both proven and pending"
    missing = sorted(found - listed)
    assert not missing, f"checks with no catalogue entry (evidence and a test that makes them fail): {missing}"
    stale = sorted(n for n in set(CATALOGUE) if n not in found)
    assert not stale, f"catalogue entries for checks that no longer exist: {stale}"
    print(f"{len(found)} kinds of check; proven: {len(CATALOGUE)}; pending: {sorted(PENDING)}")


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_each_catalogued_check_names_evidence_and_an_existing_failing_test(name):
    evidence, test = CATALOGUE[name]
    assert len(evidence) > 20, f"{name}: say what it reads"
    assert _test_exists(test), f"{name}: no test {test}"
