"""The leak measure of the PII check: raw values of a row, found in its reasons however they were cut."""

import duckdb
import pandas as pd
import pytest

from platform_assets.declared import use_case
from platform_assets.validate.pii import count_leaked_reasons

SOURCE = use_case("loan_default").source

FILE = "/data/Jane Doe/applications_2026-09-01.csv"  # a path may hold any word, a name too


@pytest.fixture
def con():
    con = duckdb.connect()
    raw = pd.DataFrame({
        "_source_file": FILE, "_source_row": [1, 2, 3, 4],
        "applicant_name": ["Jane Doe", "Jane Doe", "Li", "Jane Doe"],
        "email": ["Jane Doe@example.com", "jane@example.com", "li@x.io", "jane@example.com"],
        "phone": ["+44 7700 900123", "call +44 7700 900123 or later, after five", "+44 7700 900999", None],
        "_partition": "2026-09-01",
    })
    quarantine = raw.assign(
        applicant_name="masked", email="masked", phone="masked",
        _quarantine_reasons=["email: valid_email (value withheld: personal data)", "phone: missing",
                             "row: loan_within_income_multiple", f"application_id: duplicate of {FILE}:1"],
        _duplicate_of=[None, None, None, f"{FILE}:1"],
    )
    con.execute("CREATE SCHEMA raw; CREATE SCHEMA quarantine")
    con.execute("CREATE TABLE raw.applications AS SELECT * FROM raw")
    con.execute("CREATE TABLE quarantine.applications AS SELECT * FROM quarantine")
    yield con
    con.close()


def _reason(con, row, text):
    con.execute("UPDATE quarantine.applications SET _quarantine_reasons = ? WHERE _source_row = ?", [text, row])


def test_reasons_without_values_are_clean_even_when_a_path_holds_a_name(con):
    assert count_leaked_reasons(con, SOURCE) == {"applicant_name": 0, "email": 0, "phone": 0}


def test_a_whole_value_or_its_start_is_a_leak(con):
    _reason(con, 1, "email: str_matches (got 'Jane Doe@example.com')")  # the email, and the name inside it
    _reason(con, 2, "phone: bad (got 'call +44 7700 900123 or later, a... (43 chars))")
    assert count_leaked_reasons(con, SOURCE) == {"applicant_name": 1, "email": 1, "phone": 1}
    assert count_leaked_reasons(con, SOURCE, ["2026-09-02"]) == {"applicant_name": 0, "email": 0, "phone": 0}


def test_a_value_too_short_to_tell_apart_is_not_counted(con):
    _reason(con, 3, "row: Li was here")  # "Li" (two characters) could be part of any word
    assert count_leaked_reasons(con, SOURCE)["applicant_name"] == 0
