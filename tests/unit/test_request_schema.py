"""A caller's row is held to the bounds the validation stage quarantines rows by, read from their one home.

``deploy/serving/payload.py`` (the model server's request checks) against the loan-default
use case's declared rules (``platform_assets/use_cases/loan_default/bounds.py``), the
bounds its pandera schema is built from.
"""

import datetime as dt
import importlib.util
import json
from pathlib import Path

import pandera.pandas as pa
import pytest

from platform_assets.declarations import FieldRule
from platform_assets.declared import use_case, use_cases
from platform_assets.validate.rules import REASONS, split_valid_rows

SERVING = Path(__file__).resolve().parents[2] / "deploy" / "serving"
spec = importlib.util.spec_from_file_location("payload_under_test", SERVING / "payload.py")
payload = importlib.util.module_from_spec(spec)
spec.loader.exec_module(payload)

SOURCE = use_case("loan_default").source
RULES = SOURCE.declared_rules()
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)
EARLIEST = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).timestamp()
IDS = {"application_id": ("str", True), "applicant_id": ("int", True)}
NUMERIC = ["income", "loan_amount", "term_months", "employment_years", "credit_history_years", "num_open_accounts",
           "num_delinquencies", "debt_to_income"]
CATEGORIES = {"region": ["north", "south", "east", "west", "central"]}
GOOD = {"application_id": "app-1", "applicant_id": 17, "application_ts": "2026-11-23T09:30:00Z", "income": 52000.0,
        "loan_amount": 12000.0, "term_months": 36, "employment_years": 4.5, "credit_history_years": 9.0,
        "num_open_accounts": 3, "num_delinquencies": 0, "debt_to_income": 0.31, "region": "north"}


def _request(*rows: dict) -> dict:
    names = list(GOOD)
    return {"data": {"names": names, "ndarray": [[row[n] for n in names] for row in rows]}}


def _check(message):
    return payload.row_columns(message, NUMERIC, CATEGORIES, NOW.timestamp(), IDS, "application_ts", RULES, EARLIEST)


VIOLATIONS = {
    "negative income": ({"income": -5.0}, "row 0, column 'income': -5.0 violates income > 0"),
    "negative loan amount": ({"loan_amount": -100.0}, "row 0, column 'loan_amount': -100.0 violates loan_amount > 0"),
    "7-month term": ({"term_months": 7}, "row 0, column 'term_months': 7 violates term_months in [36, 60]"),
    "debt_to_income 5": ({"debt_to_income": 5}, "row 0, column 'debt_to_income': 5 violates debt_to_income <= 1"),
    "fractional account count": ({"num_open_accounts": 2.5},
                                 "row 0, column 'num_open_accounts': 2.5 violates num_open_accounts is a whole number"),
    "loan of 1e38": ({"loan_amount": 1e38}, "row 0: loan_amount 1e+38, income 52000.0 violate "
                                           "loan_within_income_multiple (loan_amount <= 10 * |income|)"),
    "year 1": ({"application_ts": "0001-01-01T00:00:00"},
               "row 0, column 'application_ts': '0001-01-01T00:00:00' violates application_ts >= 2025-01-01T00:00:00"),
    "year 9999": ({"application_ts": "9999-12-31T00:00:00"},
                  "row 0, column 'application_ts': '9999-12-31T00:00:00' violates application_ts <= now + 300 s"),
    "tomorrow": ({"application_ts": (NOW + dt.timedelta(days=1)).isoformat()},
                 "violates application_ts <= now + 300 s (not in the future; now is 2026-11-23T12:00:00)"),
    "applicant_id beyond int64": ({"applicant_id": 9223372036854775808},
                                  "row 0, column 'applicant_id': 9223372036854775808 violates -9223372036854775808 <= "
                                  "applicant_id <= 9223372036854775807 (ids are signed 64-bit integers)"),
    "lone surrogate id": ({"application_id": "\ud800x"},
                          "row 0, column 'application_id': '\\ud800x' violates application_id is Unicode text "
                          "(a lone surrogate at character 0)"),
}


@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_each_schema_violation_is_refused_naming_row_field_and_rule(case):
    change, expected = VIOLATIONS[case]
    with pytest.raises(payload.RequestError) as raised:
        _check(_request(GOOD, {**GOOD, **change}) if case == "tomorrow" else _request({**GOOD, **change}))
    assert expected.replace("row 0", "row 1" if case == "tomorrow" else "row 0") in str(raised.value)
    assert str(raised.value).startswith("1 invalid value(s): ")  # the valid row beside it is not blamed


def test_the_same_violations_sent_over_the_wire_are_refused_too():
    """A lone surrogate arrives as JSON's escape; 9223372036854775808 as a JSON integer."""
    body = ('{"data": {"names": ["application_id", "applicant_id"], "ndarray": [["\\ud800x", 9223372036854775808]]}}')
    message = payload.decode_json(body.encode())
    with pytest.raises(payload.RequestError, match="lone surrogate.*signed 64-bit"):
        payload.row_columns(message, [], {}, NOW.timestamp(), IDS, "application_ts", RULES, EARLIEST)


@pytest.mark.parametrize("body, expected", [
    (b"[" * 5000 + b"]" * 5000, "nests JSON deeper than 1024 levels"),
    (b'{"data": {"names": ["income"], "ndarray": [[52000.0]]}, "x": "\xff\xfe"}',
     "not UTF-8 text (byte 0xff at position 62)"),
    (b"{data: x", "not JSON: Expecting property name"),
    (b"", "not JSON"),
])
def test_a_body_that_is_not_utf8_json_is_refused_saying_why(body, expected):
    with pytest.raises(payload.RequestError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        payload.decode_json(body)


def test_json_that_orjson_refuses_but_python_reads_reaches_the_value_checks():
    assert payload.decode_json(b'{"x": NaN}')["x"] != payload.decode_json(b'{"x": NaN}')["x"]  # NaN, named later
    deep = payload.decode_json(b'{"data": {"names": ["income"], "ndarray": [[' + b"[" * 1000 + b"]" * 1000 + b"]]}}")
    with pytest.raises(payload.RequestError, match=r"row 0, column 'income': expected a number, got array \[\[\[\.\.\.\]\]\]"):
        payload.model_columns(deep, ["income"], {})  # echoed in short: no RecursionError


def test_valid_rows_pass_with_their_ids_and_times():
    late = {**GOOD, "application_id": "app-2", "application_ts": (NOW + dt.timedelta(seconds=200)).isoformat()}
    columns, ids, times = _check(_request(GOOD, late, {**GOOD, "application_id": 12, "applicant_id": 0}))
    assert ids == {"application_id": ["app-1", "app-2", "12"], "applicant_id": [17, 17, 0]}
    assert times[1] == NOW.timestamp() + 200  # within the allowed clock skew
    assert list(columns["income"]) == [52000.0] * 3


def test_ids_and_request_ids_must_be_storable_text():
    too_long = "a" * (payload.MAX_ID_CHARS + 1)
    with pytest.raises(payload.RequestError, match=f"application_id has at most {payload.MAX_ID_CHARS} characters"):
        _check(_request({**GOOD, "application_id": too_long}))
    with pytest.raises(payload.RequestError, match="applicant_id >= 0"):
        _check(_request({**GOOD, "applicant_id": -1}))
    with pytest.raises(payload.RequestError, match="'meta.puid'.*lone surrogate"):
        payload.request_id({"meta": {"puid": "\udfffabc"}})
    assert payload.request_id({"meta": {"puid": "r-1"}}) == "r-1" and payload.request_id({}) is None


def test_the_request_form_is_held_to_the_same_rules():
    message = {"data": {"names": ["income", "debt_to_income", "region"], "ndarray": [[52000.0, 5, "north"],
                                                                                    [52000.0, 0.2, "atlantis"]]}}
    with pytest.raises(payload.RequestError) as raised:
        payload.model_columns(message, ["income", "debt_to_income"], {"region": ["north", "south"]}, RULES)
    text = str(raised.value)
    assert "row 0, column 'debt_to_income': 5 violates debt_to_income <= 1" in text
    assert "row 1, column 'region': 'atlantis' violates region in ['north', 'south', 'east', 'west', 'central']" in text
    # A level the rules allow but the model was not fitted on keeps the model's own message.
    message["data"]["ndarray"] = [[52000.0, 0.2, "west"]]
    with pytest.raises(payload.RequestError, match=r"'west' is not one of \['north', 'south'\]"):
        payload.model_columns(message, ["income", "debt_to_income"], {"region": ["north", "south"]}, RULES)


def test_the_validation_stage_quarantines_the_same_values_for_the_same_rules():
    """The schema reads the same rules: the row the server refuses is the row validation quarantines."""
    from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications

    rows = generate_applications(GeneratorConfig(days=1, rows_per_day=8, dirty_fraction=0)).reset_index(drop=True)
    rows.loc[0, "income"] = -5.0
    rows.loc[1, "term_months"] = 7
    rows.loc[2, "debt_to_income"] = 5.0
    rows.loc[3, "num_open_accounts"] = 2.5
    rows.loc[4, "loan_amount"] = 1e38
    result = split_valid_rows(rows, SOURCE.schema_model(), SOURCE.pii)
    reasons = result.quarantined[REASONS].to_dict()
    assert set(reasons) == {0, 1, 2, 3, 4}
    assert "income: greater_than(0)" in reasons[0] and "term_months: isin([36, 60])" in reasons[1]
    assert "less_than_or_equal_to(1)" in reasons[2] and "not a whole number" in reasons[3]
    assert reasons[4] == "row: loan_within_income_multiple"


@pytest.mark.parametrize("name", [u.name for u in use_cases()])
def test_the_schema_s_bounds_all_come_from_the_declared_rules(name):
    """Every built-in check of the schema is a declared rule's, and an integer column is a whole-number rule."""
    source = use_case(name).source
    rules, schema = source.declared_rules(), source.schema_model().to_schema()
    for column, field in schema.columns.items():
        statistics = [(check.name, check.statistics) for check in field.checks if check.statistics]
        rule = rules.fields.get(column)
        if rule is None:
            assert not statistics, f"{column}: bounds in the schema but not in the declared rules"
            continue
        expected = [(check.name, check.statistics) for check in pa.Field(**rule.checks()).checks]
        assert statistics == expected, column
        assert rule.whole == ("int" in str(field.dtype).lower()), column
    assert {c for r in rules.rows for c in r.columns} <= set(schema.columns)
    json.dumps({c: r.checks() for c, r in rules.fields.items()})  # plain data


def test_a_field_rule_names_what_it_breaks():
    rule = FieldRule(whole=True, ge=0, lt=10)
    assert [rule.broken("n", v) for v in (3, 3.0, -1, 10, 2.5, True, "3", float("nan"))] == [
        None, None, "n >= 0", "n < 10", "n is a whole number", "n is a whole number", "n is a whole number",
        "n is a whole number"]
    assert FieldRule(le=1).broken("x", 2**80) == "x <= 1"  # exact, no overflow
    assert FieldRule(isin=("a", "b")).broken("c", None) == "c in ['a', 'b']"
