"""Batches of whole days: consecutive, in order, at most the limit unless one day alone is larger."""

import pytest

from platform_assets.ingest.load import batch_rows, day_batches


def test_days_are_grouped_in_order_up_to_the_limit_and_a_big_day_stands_alone():
    rows = {"d1": 40, "d2": 50, "d3": 0, "d4": 250, "d5": 10, "d6": 95}
    assert day_batches(rows, 100) == [["d1", "d2", "d3"], ["d4"], ["d5"], ["d6"]]
    assert day_batches(rows, 1000) == [list(rows)]
    assert day_batches({}, 10) == []


def test_the_batch_size_must_be_a_positive_number(monkeypatch):
    from platform_assets.config import ConfigurationError

    monkeypatch.setenv("PLATFORM_BATCH_ROWS", "0")
    with pytest.raises(ConfigurationError, match="PLATFORM_BATCH_ROWS"):
        batch_rows()


def test_materialization_windows_cut_at_day_boundaries_and_cover_the_range():
    import datetime as dt

    from platform_assets.features.online_load import materialize_windows

    start, end = dt.datetime(2026, 9, 1, 5), dt.datetime(2026, 9, 5, 23)
    days = {dt.date(2026, 9, d): 60 for d in range(1, 6)}
    windows = materialize_windows(start, end, days, 130)
    assert windows == [(start, dt.datetime(2026, 9, 3)), (dt.datetime(2026, 9, 3), dt.datetime(2026, 9, 5)),
                       (dt.datetime(2026, 9, 5), end)]
    assert materialize_windows(start, end, days, 10_000) == [(start, end)]
