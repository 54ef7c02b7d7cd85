"""Outcome files: every row kept or rejected with its reason, one outcome per application, counts conserved."""

import datetime as dt

import duckdb
import pandas as pd

from platform_assets.declared import use_case

SOURCE = use_case("loan_default").source
import pytest

from platform_assets.monitor import outcomes
from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications
from platform_assets.validate.rules import split_valid_rows

CSV = """application_id,is_default,label_ts
a1,1,2026-10-02T09:00:00
a2,0,2026-10-02T10:00:00

a3,yes,2026-10-02T10:00:00
,1,2026-10-02T10:00:00
a4,0,not a time
a5,1,2026-10-03T01:00:00
a1,0,2026-10-02T11:00:00
"""


def _file(tmp_path, day, text):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"outcomes_{day}.csv"
    path.write_text(text)
    return path


def test_every_row_is_an_outcome_or_a_rejected_row_with_its_reason(tmp_path):
    read = outcomes.read_outcome_file(_file(tmp_path, "2026-10-02", CSV), "2026-10-02", SOURCE)
    assert read.rows == 7  # the blank line is not a row
    assert read.outcomes["application_id"].tolist() == ["a1", "a2"]
    reasons = {r["_source_row"]: r["reason"] for r in read.rejected}
    assert reasons == {
        3: "is_default: not 0 or 1: yes",
        4: "application_id: missing",
        5: "label_ts: not a timestamp",
        6: "label_ts: after the file's day 2026-10-02",
        7: "application_id: a second outcome in this file (first at row 1)",
    }
    assert len(read.outcomes) + len(read.rejected) == read.rows


def test_a_second_outcome_on_a_later_day_is_rejected_and_a_replaced_day_is_not_counted_twice(tmp_path):
    con = duckdb.connect()
    first = outcomes.read_outcome_file(_file(tmp_path, "2026-10-02", CSV), "2026-10-02", SOURCE)
    outcomes.write_day(con, "2026-10-02", [first], dt.datetime(2026, 10, 3), SOURCE, "monitor")
    outcomes.write_day(con, "2026-10-02", [first], dt.datetime(2026, 10, 3), SOURCE, "monitor")  # the same day again: replaced
    later = outcomes.read_outcome_file(
        _file(tmp_path, "2026-10-04", "application_id,is_default,label_ts\na2,1,2026-10-04T08:00:00\n"
                                      "a9,1,2026-10-04T08:00:00\n"), "2026-10-04", SOURCE)
    counts = outcomes.write_day(con, "2026-10-04", [later], dt.datetime(2026, 10, 5), SOURCE, "monitor")
    assert counts == {"rows": 2, "outcomes": 1, "rejected": 1}
    held = dict(con.execute("SELECT application_id, is_default FROM monitor.outcomes").fetchall())
    assert held == {"a1": 1, "a2": 0, "a9": 1}  # a2's first outcome stands
    assert con.execute("SELECT reason FROM monitor.outcome_rejects WHERE _partition = '2026-10-04'").fetchone()[0] \
        == "application_id: outcome already known from 2026-10-02"


def test_a_file_without_the_columns_is_refused_with_its_name(tmp_path):
    path = _file(tmp_path, "2026-10-02", "id,label\n1,0\n")
    with pytest.raises(ValueError, match=r"outcomes_2026-10-02.csv: missing columns \['application_id'"):
        outcomes.read_outcome_file(path, "2026-10-02", SOURCE)


def test_outcome_files_round_trip_by_the_day_the_outcome_became_known(tmp_path):
    df = generate_applications(GeneratorConfig(days=4, rows_per_day=50, seed=2, label_delay_days=(1, 3)))
    paths = outcomes.write_outcome_files(df, tmp_path / "outcomes", SOURCE)
    assert [p.name for p in paths] == [f"outcomes_{d}.csv" for d in outcomes.landed_days(tmp_path / "outcomes")]
    read = [outcomes.read_outcome_file(p, p.stem.split("_")[1], SOURCE) for p in paths]
    assert sum(len(r.outcomes) for r in read) == len(df) and not any(r.rejected for r in read)


def test_an_application_may_come_without_its_outcome_but_not_with_half_of_it():
    df = generate_applications(GeneratorConfig(days=2, rows_per_day=100, seed=4, dirty_fraction=0))
    df["is_default"] = df["is_default"].astype("Int64")
    df.loc[:9, ["is_default", "label_ts"]] = None
    df.loc[10, "label_ts"] = None  # an outcome without the time it became known
    source = use_case("loan_default").source
    result = split_valid_rows(df.reset_index(drop=True), source.schema_model(), source.pii)
    assert len(result.valid) == len(df) - 1 and result.valid["is_default"].isna().sum() == 10
    assert result.quarantined["_quarantine_reasons"].tolist() == ["row: outcome_and_its_time_together"]
    assert pd.api.types.is_integer_dtype(result.valid["is_default"])


def test_rows_a_warehouse_cannot_store_or_dated_after_the_file_are_rejected_and_the_rest_kept(tmp_path):
    data = (b"application_id,is_default,label_ts\n"
            b"a1,1,2026-10-02T09:00:00\n"
            b"a\xff2,0,2026-10-02T10:00:00\n"  # a byte that is not UTF-8
            b"a3,1,2099-01-01T00:00:00\n"  # known in 2099
            b"a4,1,9999-12-31T23:59:59\n"
            b"a5,0,2026-10-02T10:00:00,extra\n"
            b"a\x006,1,2026-10-02T11:00:00\n"  # NUL: DuckDB stores it, kept as it is
            b"a7,\xed\xa0\x80,2026-10-02T11:00:00\n")  # an encoded lone surrogate: not UTF-8 either
    path = tmp_path / "outcomes_2026-10-02.csv"
    path.write_bytes(data)
    read = outcomes.read_outcome_file(path, "2026-10-02", SOURCE)
    assert read.rows == 7 == len(read.outcomes) + len(read.rejected)
    assert read.outcomes["application_id"].tolist() == ["a1", "a\x006"]
    reasons = {r["_source_row"]: r["reason"] for r in read.rejected}
    assert reasons[2] == "application_id: not UTF-8 text (byte 0xff at character 2)"
    assert reasons[3] == reasons[4] == "label_ts: after the file's day 2026-10-02"
    assert reasons[5] == "row: 4 fields where the header has 3"
    assert reasons[7].startswith("is_default: not UTF-8 text (byte 0xed at character 1); is_default: not 0 or 1: \\udced")
    con = duckdb.connect()
    counts = outcomes.write_day(con, "2026-10-02", [read], dt.datetime(2026, 10, 3), SOURCE, "monitor")
    assert counts == {"rows": 7, "outcomes": 2, "rejected": 5}
    assert con.execute("SELECT count(*) FROM monitor.outcome_rejects").fetchone()[0] == 5
