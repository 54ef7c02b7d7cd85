"""The duplicate policy: the first copy of an id (time, then file, then row) is valid, whatever the order."""

import itertools

import numpy as np
import pandas as pd
import pytest

from platform_assets.declared import use_case
from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications
from platform_assets.validate.duplicates import DUPLICATE_OF, first_copies, split_batch
from platform_assets.validate.rules import REASONS

SOURCE = use_case("loan_default").source

T0 = pd.Timestamp("2026-09-01 10:00")


def _copies(rows):
    """Candidates from (id, minutes after T0, file, row)."""
    return pd.DataFrame(
        [{"application_id": i, "application_ts": T0 + pd.Timedelta(minutes=m), "_source_file": f, "_source_row": r}
         for i, m, f, r in rows]
    )


def test_the_earliest_copy_is_first_then_the_file_then_the_row():
    candidates = _copies([
        ("a", 5, "f2", 1),  # later in time
        ("a", 0, "f2", 3),  # earliest: first
        ("b", 0, "f2", 1),  # same time as the next: the file decides
        ("b", 0, "f1", 9),  # first
        ("c", 0, "f1", 4),  # same time and file: the row decides
        ("c", 0, "f1", 2),  # first
        ("d", 0, "f3", 1),  # alone
    ])
    first = first_copies(candidates, "application_id", "application_ts")
    assert first.fillna("first").tolist() == ["f2:3", "first", "f1:9", "first", "f1:2", "first", "first"]


def test_the_outcome_does_not_depend_on_the_order_of_rows():
    rng = np.random.default_rng(0)
    rows = [(f"id{rng.integers(0, 6)}", int(rng.integers(0, 4)), f"f{rng.integers(0, 3)}", r) for r in range(40)]
    expected = None
    for seed in range(6):
        shuffled = _copies(rows).sample(frac=1, random_state=seed)
        first = first_copies(shuffled, "application_id", "application_ts").sort_index()
        if expected is None:
            expected = first
        pd.testing.assert_series_equal(first, expected)
    assert expected.isna().sum() == _copies(rows)["application_id"].nunique()


def test_no_candidates_no_duplicates():
    assert first_copies(_copies([]).reindex(columns=["application_id", "application_ts", "_source_file",
                                                       "_source_row"]), "application_id", "application_ts").empty


@pytest.fixture(scope="module")
def batch():
    df = generate_applications(GeneratorConfig(days=1, rows_per_day=12, dirty_fraction=0)).head(10)
    return df.assign(_source_file="landing/applications_2026-09-01.csv", _source_row=range(1, len(df) + 1))


def test_two_copies_in_one_file_keep_exactly_one_valid(batch):
    df = batch.copy()
    df.loc[5, "application_id"] = df.loc[2, "application_id"]  # row 6 repeats row 3's id, later in the day
    for order in (df, df.iloc[::-1]):
        result = split_batch(order, SOURCE)
        assert len(result.valid) == 9 and len(result.quarantined) == 1
        dup = result.quarantined.iloc[0]
        assert dup["_source_row"] == 6 and dup[DUPLICATE_OF] == "landing/applications_2026-09-01.csv:3"
        assert dup[REASONS] == "application_id: duplicate of landing/applications_2026-09-01.csv:3"
        assert result.failure_counts["duplicate"] == 1


def test_a_copy_that_fails_another_rule_does_not_count(batch):
    df = batch.copy()
    df.loc[5, "application_id"] = df.loc[2, "application_id"]
    df.loc[2, "income"] = -1.0  # the earlier copy is invalid: the later one is the first valid copy
    result = split_batch(df, SOURCE)
    assert result.quarantined["_source_row"].tolist() == [3]
    assert "income: greater_than(0)" in result.quarantined[REASONS].iloc[0]
    assert result.quarantined[DUPLICATE_OF].isna().all()
    assert df.loc[5, "application_id"] in set(result.valid["application_id"])


def test_every_permutation_of_three_copies_gives_the_same_valid_row(batch):
    df = batch.head(3).assign(application_id="same")
    outcomes = {
        tuple(split_batch(df.iloc[list(p)], SOURCE).valid["_source_row"]) for p in itertools.permutations(range(3))
    }
    assert outcomes == {(1,)}
