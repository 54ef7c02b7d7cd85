"""Warehouse writes are atomic: all tables of a step change together, or none does."""

import pandas as pd
import pytest

from platform_assets.resources import Warehouse


def _rows(warehouse, table):
    with warehouse.connect(read_only=True) as con:
        return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


def test_a_partition_write_replaces_its_days_only(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "w.duckdb"))
    day = lambda d, xs: pd.DataFrame({"x": xs, "_partition": d})  # noqa: E731
    warehouse.replace_partitions({"raw.a": day("2026-01-01", [1, 2])}, "_partition", ["2026-01-01"])
    warehouse.replace_partitions({"raw.a": day("2026-01-02", [3])}, "_partition", ["2026-01-02"])
    warehouse.replace_partitions({"raw.a": day("2026-01-01", [5])}, "_partition", ["2026-01-01"])
    assert _rows(warehouse, "raw.a") == [(3, "2026-01-02"), (5, "2026-01-01")]
    # An empty batch for a day empties that day.
    warehouse.replace_partitions({"raw.a": day("2026-01-02", [])}, "_partition", ["2026-01-02"])
    assert _rows(warehouse, "raw.a") == [(5, "2026-01-01")]


def test_a_failed_partition_write_leaves_the_previous_day_intact(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "w.duckdb"))
    before = pd.DataFrame({"x": [1, 2], "_partition": "2026-01-01"})
    warehouse.replace_partitions({"raw.a": before, "raw.b": before}, "_partition", ["2026-01-01"])
    # raw.a's day is deleted and rewritten inside the transaction, then raw.b fails: nothing changes.
    with pytest.raises(ValueError, match="lack the partition column"):
        warehouse.replace_partitions(
            {"raw.a": pd.DataFrame({"x": [9], "_partition": "2026-01-01"}), "raw.b": pd.DataFrame({"x": [9]})},
            "_partition", ["2026-01-01"],
        )
    assert _rows(warehouse, "raw.a") == _rows(warehouse, "raw.b") == [(1, "2026-01-01"), (2, "2026-01-01")]


def test_text_from_a_later_day_widens_a_typed_column_and_keeps_the_values(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "w.duckdb"))
    warehouse.replace_partitions({"raw.a": pd.DataFrame({"x": [1.5], "_partition": "d1"})}, "_partition", ["d1"])
    warehouse.replace_partitions({"raw.a": pd.DataFrame({"x": ["abc"], "_partition": "d2"})}, "_partition", ["d2"])
    assert _rows(warehouse, "raw.a") == [("1.5", "d1"), ("abc", "d2")]


def test_a_table_from_before_partitioning_is_named_not_overwritten(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "w.duckdb"))
    with warehouse.connect() as con:
        con.execute("CREATE SCHEMA raw; CREATE TABLE raw.a AS SELECT 1 AS x")
    with pytest.raises(ValueError, match="raw.a has no partition column '_partition'"):
        warehouse.replace_partitions({"raw.a": pd.DataFrame({"x": [2], "_partition": "d"})}, "_partition", ["d"])
    assert _rows(warehouse, "raw.a") == [(1,)]
