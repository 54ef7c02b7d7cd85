"""The batch-scoring check's decision, on planted gaps: a row not scored, scored twice, a probability out of range."""

import duckdb
import pytest

from platform_assets.declarations import Source
from platform_assets.deploy.batch import scoring_gaps

SOURCE = Source(name="offers", file_prefix="offers", schema="x:Y", key="offer_id", event_time="sent_at")


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA validated; CREATE SCHEMA monitor")
    con.execute("CREATE TABLE validated.offers AS SELECT * FROM (VALUES ('a', '2026-11-01'), ('b', '2026-11-01'), "
                "('c', '2026-11-02')) t(offer_id, _partition)")
    con.execute("CREATE TABLE monitor.batch AS SELECT * FROM (VALUES ('a', '2026-11-01', 0.2), "
                "('b', '2026-11-01', 0.7), ('c', '2026-11-02', 0.5)) t(offer_id, _partition, probability)")
    con.execute("ALTER TABLE monitor.batch ALTER probability TYPE DOUBLE")
    yield con
    con.close()


def test_every_row_scored_once_passes(con):
    assert scoring_gaps(con, SOURCE, "monitor.batch", None)["passed"]
    assert scoring_gaps(con, SOURCE, "monitor.batch", ["2026-11-01"])["scored_rows"] == 2


@pytest.mark.parametrize("plant, field", [
    ("DELETE FROM monitor.batch WHERE offer_id = 'b'", "scored_rows"),
    ("INSERT INTO monitor.batch VALUES ('a', '2026-11-01', 0.2)", "distinct_keys"),
    ("UPDATE monitor.batch SET probability = NULL WHERE offer_id = 'a'", "bad_probabilities"),
    ("UPDATE monitor.batch SET probability = 'nan'::DOUBLE WHERE offer_id = 'a'", "bad_probabilities"),
    ("UPDATE monitor.batch SET probability = 1.5 WHERE offer_id = 'a'", "bad_probabilities"),
])
def test_a_planted_gap_fails_the_check(con, plant, field):
    con.execute(plant)
    found = scoring_gaps(con, SOURCE, "monitor.batch", ["2026-11-01"])
    assert not found["passed"], found
    assert scoring_gaps(con, SOURCE, "monitor.batch", ["2026-11-02"])["passed"]  # the other day is untouched
