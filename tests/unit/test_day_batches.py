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
