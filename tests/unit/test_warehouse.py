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
