"""Declared column names go into SQL quoted: a reserved word (``default``, ``order``, ``end``) is a name like any other.

The paths the keyword-columns integration test does not take: labels from outcome files joined to the rows
(training after outcomes landed), new labels since a training set, and columns added to a table later.
"""

import duckdb
import pandas as pd
import pytest

from platform_assets.declarations import Source, UseCase
from platform_assets.features.training_set import labelled_rows_sql
from platform_assets.monitor import logs, outcomes
from platform_assets.monitor.arrivals import new_labels_since
from platform_assets.sql import quoted
from platform_assets.warehouse import Warehouse

SOURCE = Source(name="cards", file_prefix="cards", schema="x:Y", key="user", event_time="order", label="default",
                label_time="end", pii=("to",), protected=("group",))
USE_CASE = UseCase(name="card_default", source=SOURCE, label="default", entity_keys=("user",),
                   feature_service="card_default_model", model_name="card-default", protected_attribute="group")


def test_a_quoted_name_is_one_identifier_found_whatever_its_case():
    assert quoted("default") == '"default"' and quoted('say "hi"') == '"say ""hi"""'
    with duckdb.connect() as con:
        con.execute('CREATE TABLE t ("Default" INTEGER, "say ""hi""" INTEGER)')
        con.execute("INSERT INTO t VALUES (1, 2)")
        names = ", ".join(quoted(n) for n in ("default", "DEFAULT", 'say "hi"'))
        row = con.execute(f"SELECT {names} FROM t").fetchone()
        columns = [d[0] for d in con.description]
    assert row == (1, 1, 2)
    assert columns[0] == "Default"  # the stored name, as an unquoted name would give it


@pytest.fixture
def cards(tmp_path):
    """Three validated rows: one labelled in its own row, one whose outcome landed in a file, one not known yet."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA validated")
    con.execute("""CREATE TABLE validated.cards ("user" VARCHAR, "order" TIMESTAMP, "group" VARCHAR,
                   "default" BIGINT, "end" TIMESTAMP, _source_file VARCHAR, _partition VARCHAR)""")
    con.execute("""INSERT INTO validated.cards VALUES
        ('U1', '2026-01-01 08:00', 'a', 1, '2026-01-01 09:00', 'cards_2026-01-01.csv', '2026-01-01'),
        ('U2', '2026-01-02 08:00', 'b', NULL, NULL, 'cards_2026-01-02.csv', '2026-01-02'),
        ('U3', '2026-01-03 08:00', 'c', NULL, NULL, 'cards_2026-01-03.csv', '2026-01-03')""")
    path = tmp_path / "outcomes_2026-01-03.csv"
    path.write_text("user,default,end\nU2,0,2026-01-03T07:00:00\n")
    outcome_file = outcomes.read_outcome_file(path, "2026-01-03", SOURCE)
    assert not outcome_file.rejected
    outcomes.write_day(con, "2026-01-03", [outcome_file], pd.Timestamp("2026-01-03 12:00"), SOURCE,
                       USE_CASE.monitor_schema)
    yield con
    con.close()


def test_labels_come_from_the_row_or_its_outcome_file(cards):
    labelled = cards.execute(labelled_rows_sql(USE_CASE, with_outcome_files=True)).df()
    known = labelled[labelled["default"].notna()].sort_values("user")
    assert list(known["user"]) == ["U1", "U2"] and list(known["default"]) == [1, 0]
    assert list(known["group"]) == ["a", "b"] and "order" in labelled.columns
    assert str(known["label_ts"].iloc[1]) == "2026-01-03 07:00:00"
    joined = cards.execute(outcomes.labels_query({"monitor_card_default.outcomes"}, USE_CASE)).df()
    assert sorted(zip(joined["user"], joined["default"])) == [("U1", 1), ("U2", 0)]


def test_new_labels_are_counted_from_rows_and_outcome_files(cards):
    assert new_labels_since(cards, None, USE_CASE) == 2
    assert new_labels_since(cards, "2026-01-02 00:00:00", USE_CASE) == 1  # U2's outcome, known on the 3rd


def test_a_keyword_column_added_later_is_added_and_widened_by_name(tmp_path):
    warehouse = Warehouse(database=str(tmp_path / "w.duckdb"))
    first = pd.DataFrame({"user": ["U1"], "order": [1], "_partition": ["d1"]})
    later = pd.DataFrame({"user": ["U2"], "order": ["late"], "group": ["a"], "_partition": ["d2"]})
    warehouse.replace_partitions({"s.t": first}, "_partition", ["d1"])
    warehouse.replace_partitions({"s.t": later}, "_partition", ["d2"])
    with warehouse.connect() as con:
        rows = con.execute('SELECT "user", "order", "group" FROM s.t ORDER BY 1').fetchall()
        logs.add_missing_columns(con, "s.t", pd.DataFrame({"limit": [1.0], 'say "hi"': ["x"]}))
        added = [r[0] for r in con.execute("DESCRIBE s.t").fetchall()]
    assert rows == [("U1", "1", None), ("U2", "late", "a")]
    assert added[-2:] == ["limit", 'say "hi"']
