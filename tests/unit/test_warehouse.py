"""Warehouse writes are atomic: all tables of a step change together, or none does."""

import pandas as pd
import pytest

from platform_assets.resources import Warehouse


def test_a_failure_half_way_leaves_the_previous_tables(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "w.duckdb"))
    before = pd.DataFrame({"x": [1, 2, 3]})
    warehouse.replace_tables({"raw.a": before, "raw.b": before})
    # The second table fails after the first was replaced inside the transaction.
    with pytest.raises(Exception):
        warehouse.replace_tables({"raw.a": pd.DataFrame({"x": [9]}), "raw.b": object()})
    with warehouse.connect(read_only=True) as con:
        assert con.execute("SELECT x FROM raw.a ORDER BY x").df()["x"].tolist() == [1, 2, 3]
        assert con.execute("SELECT count(*) FROM raw.b").fetchone()[0] == 3


def test_the_same_input_gives_byte_identical_tables(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "w.duckdb"))
    frame = pd.DataFrame({"x": [0.1, 0.2], "y": ["a", None]})
    warehouse.replace_tables({"raw.a": frame})
    with warehouse.connect(read_only=True) as con:
        first = con.execute("SELECT * FROM raw.a").df()
    warehouse.replace_tables({"raw.a": frame})
    with warehouse.connect(read_only=True) as con:
        second = con.execute("SELECT * FROM raw.a").df()
    pd.testing.assert_frame_equal(first, second)


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
    warehouse.replace_tables({"raw.a": pd.DataFrame({"x": [1]})})
    with pytest.raises(ValueError, match="raw.a has no partition column '_partition'"):
        warehouse.replace_partitions({"raw.a": pd.DataFrame({"x": [2], "_partition": "d"})}, "_partition", ["d"])
    assert _rows(warehouse, "raw.a") == [(1,)]
