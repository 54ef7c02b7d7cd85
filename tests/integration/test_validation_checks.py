"""The validation checks fail on planted bad data: a lost or doubled row, a raw PII value in a reason."""

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from platform_assets import definitions, settings
from tests.conftest import ingest_days, loan, loan_check, write_sample_landing

CORPUS = Path(__file__).resolve().parent.parent / "data" / "bad_inputs"


@pytest.fixture
def validated(tmp_path):
    """Three good days and the case with personal data in invalid values, ingested and validated."""
    write_sample_landing(tmp_path, days=3, rows_per_day=100)
    source = next((CORPUS / "pii_in_invalid_values").iterdir())
    shutil.copyfile(source, settings.paths(tmp_path).landing / loan().source.landing_folder / "applications_2026-09-04.csv")
    resources = definitions.embedded_resources(tmp_path)
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        result = ingest_days(resources, "2026-09-01", "2026-09-04", instance)
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    return tmp_path, resources, result, logs


def _run(check, resources):
    return check(context=dg.build_asset_check_context(), warehouse=resources["warehouse"])


def _sql(root, statement, params=()):
    with duckdb.connect(str(settings.paths(root).warehouse)) as con:
        con.execute(statement, list(params))


def test_the_run_says_which_key_masked_personal_data(validated):
    _, _, result, logs = validated
    materialized = [e.materialization for e in result.get_asset_materialization_events()]
    assert {m.metadata["pii_key"].value for m in materialized if "pii_key" in m.metadata} == {"development"}
    assert any("DEVELOPMENT key" in message for message in logs)


def test_pii_check_fails_when_a_reason_holds_a_raw_value(validated):
    root, resources, result, _ = validated
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()}["pii_is_masked"]
    assert _run(loan_check("pii_is_masked"), resources).passed
    # Plant the leak the old code made: the row's own email, then the start of a phone cut short.
    with duckdb.connect(str(settings.paths(root).warehouse), read_only=True) as con:
        rows = con.execute(
            "SELECT r._source_file, r._source_row, r.email, r.phone FROM raw.applications r "
            "JOIN quarantine.applications q USING (_source_file, _source_row) WHERE r._partition = '2026-09-04' "
            "ORDER BY r._source_row"
        ).fetchall()
    assert len(rows) == 3
    (file_a, row_a, email, _), (file_b, row_b, _, phone) = rows[:2]
    plant = "UPDATE quarantine.applications SET _quarantine_reasons = ? WHERE _source_file = ? AND _source_row = ?"
    _sql(root, plant, [f"email: invalid (got {email!r})", file_a, row_a])
    check = _run(loan_check("pii_is_masked"), resources)
    assert not check.passed and check.metadata["reasons_with_raw_email"].value == 1
    _sql(root, plant, [f"phone: bad (got {phone[:18]!r}... (40 chars))", file_b, row_b])
    check = _run(loan_check("pii_is_masked"), resources)
    assert not check.passed and check.metadata["reasons_with_raw_phone"].value == 1


def test_pii_check_fails_on_a_clear_value_in_a_masked_column(validated):
    root, resources, _, _ = validated
    _sql(root, "UPDATE validated.applications SET phone = '+44 7700 900123' WHERE _source_row = 1")
    check = _run(loan_check("pii_is_masked"), resources)
    assert not check.passed and check.metadata["validated.applications.phone"].value > 0


@pytest.mark.parametrize(
    "plant, measure",
    [
        pytest.param("DELETE FROM validated.applications WHERE _source_row = 7", "lost", id="lost"),
        pytest.param("INSERT INTO quarantine.applications BY NAME SELECT * FROM validated.applications WHERE _source_row = 7",
                     "in_both", id="in-both"),
        pytest.param("UPDATE validated.applications SET _source_row = _source_row + 1000 WHERE _source_row = 7",
                     "without_raw_row", id="stale"),
    ],
)
@pytest.mark.parametrize("batch_rows", ["250000", "150"], ids=["one-batch", "a-day-per-batch"])
def test_conservation_check_fails_on_a_lost_doubled_or_stale_row(validated, plant, measure, batch_rows, monkeypatch):
    root, resources, result, _ = validated
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()}["validation_conserves_rows"]
    _sql(root, plant)
    monkeypatch.setenv("PLATFORM_BATCH_ROWS", batch_rows)  # the check matches rows a batch of days at a time
    check = _run(loan_check("validation_conserves_rows"), resources)
    assert not check.passed and check.metadata[measure].value > 0
    assert check.metadata["raw"].value > 300
    assert check.metadata["days_not_conserved"].value or measure != "lost"
