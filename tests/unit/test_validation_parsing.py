"""The fast engine's parts agree with the reference cell by cell: parsing text, and laying out failures.

A timestamp written in ISO 8601 is read by pandas' ISO parser, anything else as ``format="mixed"``
reads it; a number is read by polars either way. Whatever the text, each cell parses to the same
value with the same reason as in the reference engine.
"""

import numpy as np
import pandas as pd
import pytest
from pandera.backends.pandas.error_formatters import reshape_failure_cases

from platform_assets.validate import parse, reference
from platform_assets.validate.check_runner import reshape

TIMESTAMPS = [
    "2026-01-02 03:04:05", "2026-01-02T03:04:05", "2026-01-02", "2026-01-02 03:04:05.123456789",
    "2026-01-02T03:04:05Z", "2026-01-02T03:04:05+02:00", "2026-01-02 03:04", "2026-1-2", "20260102",
    " 2026-01-02 03:04:05", "2026-01-02 03:04:05 ", "02/01/2026", "Jan 2 2026 3pm", "not a date", "",
    "NaT", "nan", "2262-04-12 00:00:00", "1677-09-21", "9999-12-31", "2026-02-30", "2026-01-02 25:00:00",
]
NUMBERS = ["1", " 2 ", "3.5", "1e3", "-0.25", "inf", "-inf", "nan", "NaN", "abc", "", "1_000", "0x10", "+4",
           ".5", "5.", "1,5", "12345678901234567890", "1e400", None, np.nan, 7, 7.5, True]


def assert_same_parse(values: pd.Series, dtype: str, personal: bool = False):
    try:
        slow_values, slow_reasons = reference.parse_column(values, dtype, personal)
    except Exception as error:  # a column the reference cannot take at all (naive and offset times mixed)
        with pytest.raises(type(error), match=str(error)):
            parse.parse_column(values, dtype, personal)
        return
    fast_values, fast_reasons = parse.parse_column(values, dtype, personal)
    pd.testing.assert_series_equal(fast_values, slow_values, check_exact=True)
    pd.testing.assert_series_equal(fast_reasons, slow_reasons, check_exact=True, check_index_type=False)


@pytest.mark.parametrize("text", TIMESTAMPS)
def test_a_timestamp_cell_alone_and_among_iso_cells(text):
    assert_same_parse(pd.Series([text], name="ts", dtype=object), "datetime64[ns]")
    iso = [f"2026-03-{d:02d} 10:00:00" for d in range(1, 20)]
    assert_same_parse(pd.Series([*iso, text, None], name="ts", dtype=object), "datetime64[ns]")


@pytest.mark.parametrize("texts", [
    [f"2026-03-{d:02d}T10:00:00" for d in range(1, 9)],
    [f"2026-03-{d:02d} 10:00:00.5" for d in range(1, 9)] + [None, np.nan],
    [f"2026-03-{d:02d}T10:00:00+01:00" for d in range(1, 9)],
    [f"2026-03-{d:02d}T10:00:00{z}" for d in range(1, 9) for z in ("Z", "+02:00")],
    [f"2026-03-{d:02d}T10:00:00" for d in range(1, 9)] + ["2026-03-09T10:00:00+05:00"],
], ids=["iso", "fractions and gaps", "one offset", "two offsets", "naive and one offset"])
def test_whole_timestamp_columns(texts):
    assert_same_parse(pd.Series(texts, name="ts", dtype=object), "datetime64[ns]")


@pytest.mark.parametrize("dtype", ["float64", "int64", "Int64"])
def test_number_cells_alone_and_together(dtype):
    for cell in NUMBERS:
        assert_same_parse(pd.Series([cell], name="n", dtype=object), dtype)
    assert_same_parse(pd.Series(NUMBERS, name="n", dtype=object), dtype)
    assert_same_parse(pd.Series(["1", "2", "3"], name="n", dtype=object), dtype)
    assert_same_parse(pd.Series(NUMBERS, name="n", dtype=object), dtype, personal=True)


@pytest.mark.parametrize("values", [
    pd.Series([1.0, np.nan, np.inf, 2.5]), pd.Series([1, 2, 3]), pd.Series([1, None, 3], dtype="Int64"),
    pd.Series([True, False]), pd.Series(["a", None, 3, 4.5], dtype=object), pd.Series(["a", "b"], dtype="string"),
], ids=["float", "int", "Int64", "bool", "mixed", "string"])
@pytest.mark.parametrize("dtype", ["float64", "int64", "str", "datetime64[ns]"])
def test_typed_columns(values, dtype):
    assert_same_parse(values.rename("c"), dtype)


def _failing_rows() -> pd.DataFrame:
    return pd.DataFrame({
        "name": ["a", None, "c"], "amount": [1.5, np.nan, -2.0], "count": [1, 2, 3],
        "level": pd.array([1, None, 3], dtype="Int64"), "at": pd.to_datetime(["2026-01-01", None, "2026-01-03"]),
    }, index=[10, 42, 7])


@pytest.mark.parametrize("columns", [
    ["name", "amount", "count", "level", "at"], ["amount", "count"], ["amount"], ["count"], ["at"], ["level"],
    ["name", "at"],
])
@pytest.mark.parametrize("ignore_na", [True, False])
def test_failing_rows_are_laid_out_as_pandera_lays_them_out(columns, ignore_na):
    failed = _failing_rows()[columns]
    pd.testing.assert_frame_equal(reshape(failed, ignore_na), reshape_failure_cases(failed, ignore_na), check_exact=True)
    series = failed[columns[0]]
    pd.testing.assert_frame_equal(reshape(series, ignore_na), reshape_failure_cases(series, ignore_na))


def test_iso_text_takes_the_iso_parser_and_other_text_the_mixed_one(monkeypatch):
    formats, to_datetime = [], pd.to_datetime
    monkeypatch.setattr(parse.pd, "to_datetime", lambda *a, **k: formats.append(k["format"]) or to_datetime(*a, **k))
    iso = pd.Series([f"2026-03-{d:02d}T10:00:00" for d in range(1, 9)], name="ts", dtype=object)
    parse.parse_column(iso, "datetime64[ns]")
    assert formats == ["ISO8601"]
    parse.parse_column(pd.concat([iso, pd.Series(["Jan 2 2026"])], ignore_index=True).rename("ts"), "datetime64[ns]")
    assert formats == ["ISO8601", "ISO8601", "mixed"]
