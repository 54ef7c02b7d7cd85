"""The fast validation engine splits rows exactly as pandera on pandas does (the reference engine).

Same valid rows (values, types, order), same quarantined rows, same reason strings, same counts per
check, on the bad-input corpus, on generated dirty data of both shipped use cases (as Parquet and as
CSV text delivers them) and on a schema that uses every built-in check and custom checks of each shape.
"""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.typing import Series

from platform_assets.declared import use_case
from platform_assets.ingest.landing import list_landing_files, read_landing
from platform_assets.use_cases.customer_churn.generator import ChurnConfig, generate_subscriptions
from platform_assets.use_cases.customer_churn.generator import write_landing_files as write_churn_files
from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications, write_landing_files
from platform_assets.validate import reference, rules, schema_checks
from platform_assets.validate.reasons import REASONS, SchemaViolation

CORPUS = Path(__file__).resolve().parent.parent / "data" / "bad_inputs"
LOANS = use_case("loan_default").source
CHURN = use_case("customer_churn").source


def _outcome(engine, df, schema, personal):
    """The engine's result, or the error it raised (a batch the reference cannot take at all must fail alike)."""
    try:
        return engine(df, schema, personal)
    except (SchemaViolation, ValueError, TypeError, AttributeError) as error:
        return f"{type(error).__name__}: {error}"


def both(df, schema, personal, monkeypatch, hand_over: bool = False):
    """The fast engine's outcome (handed to the reference only where ``hand_over``) and the reference's."""
    def no_hand_over(*args):
        raise AssertionError("the fast engine handed this batch to the reference engine")

    with monkeypatch.context() as patched:
        if not hand_over:
            patched.setattr(reference, "split_valid_rows", no_hand_over)
        fast = _outcome(rules.split_valid_rows, df, schema, personal)
    return fast, _outcome(reference.split_valid_rows, df, schema, personal)


def assert_same(fast, slow):
    if isinstance(slow, str) or isinstance(fast, str):
        assert fast == slow
        return
    pd.testing.assert_frame_equal(fast.valid, slow.valid, check_exact=True)
    pd.testing.assert_frame_equal(fast.quarantined, slow.quarantined, check_exact=True)
    assert fast.quarantined[REASONS].tolist() == slow.quarantined[REASONS].tolist()
    assert list(fast.failure_counts.items()) == list(slow.failure_counts.items())


def as_csv_text(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as the landing reader gives a CSV file of it: every cell text."""
    return pd.read_csv(io.StringIO(df.to_csv(index=False)), dtype=str, keep_default_na=True)


def corpus_batches():
    for case in sorted(p.name for p in CORPUS.iterdir() if p.is_dir()):
        df, accepted, _ = read_landing(list_landing_files(str(CORPUS / case)), LOANS)
        if accepted:
            yield case, df


@pytest.mark.parametrize("case, df", list(corpus_batches()), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_corpus_case(case, df, monkeypatch):
    fast, slow = both(df, LOANS.schema_model(), LOANS.pii, monkeypatch)
    assert_same(fast, slow)


def test_the_whole_bad_input_corpus_as_one_batch(monkeypatch):
    df = pd.concat([df for _, df in corpus_batches()], ignore_index=True)
    fast, slow = both(df, LOANS.schema_model(), LOANS.pii, monkeypatch)
    assert len(slow.quarantined) >= 20
    assert_same(fast, slow)


def _broken_applications(seed: int) -> pd.DataFrame:
    """Generated applications with the generator's dirty rows and a hand-made fault of every other kind."""
    df = generate_applications(GeneratorConfig(days=4, rows_per_day=150, seed=seed, dirty_fraction=0.05))
    df = df.astype({"income": object, "term_months": object, "application_ts": object, "email": object})
    df.loc[3, "income"] = "abc"
    df.loc[4, "debt_to_income"] = np.inf
    df.loc[5, "term_months"] = 36.5
    df.loc[6, "region"] = None
    df.loc[7, "application_ts"] = "not a date"
    df.loc[8, "email"] = "Jane Doe@example.com"
    df.loc[9, "phone"] = "call me"
    df.loc[10, "email"] = 12345
    df.loc[11, "label_ts"] = df.loc[11, "label_ts"] - pd.Timedelta(days=400)  # known before the application
    df.loc[12, "is_default"] = 7
    df.loc[13, "num_open_accounts"] = -2  # an int column's failure beside the float columns'
    df.loc[14, "application_ts"] = "2999-01-01 00:00:00"  # in the future
    df.loc[15, ["income", "loan_amount"]] = [-1.0, 0.0]  # two rules of one row
    return df


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("form", ["typed", "csv text"])
def test_generated_loan_applications(seed, form, monkeypatch):
    df = _broken_applications(seed)
    df = as_csv_text(df) if form == "csv text" else df
    fast, slow = both(df, LOANS.schema_model(), LOANS.pii, monkeypatch)
    assert len(slow.quarantined) > 30
    assert_same(fast, slow)


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_generated_data_of_both_use_cases_through_the_landing_reader(file_format, tmp_path, monkeypatch):
    loans = generate_applications(GeneratorConfig(days=3, rows_per_day=200, dirty_fraction=0.03))
    churn = generate_subscriptions(ChurnConfig(days=3, rows_per_day=200, dirty_fraction=0.03))
    churn.loc[churn.index[:3], "contact_email"] = ["not-an-email", "a@b", "x y@z.io"]
    write_landing_files(loans, tmp_path / "loans", file_format)
    write_churn_files(churn, tmp_path / "churn", file_format)
    for folder, source in (("loans", LOANS), ("churn", CHURN)):
        df, accepted, rejected = read_landing(list_landing_files(str(tmp_path / folder)), source)
        assert accepted and not rejected
        fast, slow = both(df, source.schema_model(), source.pii, monkeypatch)
        assert len(slow.quarantined) > 5
        assert_same(fast, slow)
        # The whole path of a source, label encoding included, agrees as well.
        with monkeypatch.context() as patched:
            patched.setattr(rules, "split_valid_rows", reference.split_valid_rows)
            slow_source = rules.split_source_rows(df, source)
        assert_same(rules.split_source_rows(df, source), slow_source)


class Offers(pa.DataFrameModel):
    """Every built-in check the fast engine runs itself, and custom checks of each shape."""

    code: Series[str] = pa.Field(unique=True, str_matches=r"^[A-Z]{2}-\d+$", str_length={"min_value": 4, "max_value": 8})
    label: Series[str] = pa.Field(isin=["a", "b"], nullable=True)
    note: Series[str] = pa.Field(nullable=True, str_startswith="n", str_contains="o", str_endswith="e")
    score: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1}, nullable=True)
    count: Series[int] = pa.Field(ge=0, lt=100, notin=[13])
    level: Series[pd.Int64Dtype] = pa.Field(isin=[1, 2, 3], nullable=True)
    fee: Series[float] = pa.Field(gt=0, le=50, ne=7.0)
    seen_at: Series[pa.DateTime] = pa.Field(ge=pd.Timestamp("2020-01-01"), lt=pd.Timestamp("2030-01-01"))

    @pa.check("code", name="code_not_reserved")
    def code_not_reserved(cls, code):  # noqa: N805
        return ~code.str.startswith("ZZ")

    @pa.check("count", element_wise=True, name="even_count")
    def even_count(cls, count):  # noqa: N805
        return count % 2 == 0

    @pa.dataframe_check(name="scored_when_labelled")
    def scored_when_labelled(cls, df):  # noqa: N805
        return df["label"].isna() | df["score"].notna()

    @pa.dataframe_check(name="fee_within_count", element_wise=True)
    def fee_within_count(cls, row):  # noqa: N805
        return row["fee"] <= row["count"] + 10

    class Config:
        coerce = True


def _offers(n: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    df = pd.DataFrame({
        "code": [f"AB-{i}" for i in range(n)],
        "label": rng.choice(["a", "b", None], n),
        "note": rng.choice(["none", "nonsense", None], n),
        "score": rng.uniform(0, 1, n).round(3),
        "count": rng.integers(0, 40, n) * 2,
        "level": pd.array(rng.choice([1, 2, 3, None], n), dtype="Int64"),
        "fee": rng.uniform(1, 10, n).round(2),
        "seen_at": pd.Timestamp("2025-06-01") + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s"),
    })
    df.loc[df["label"].notna(), "score"] = df["score"].where(rng.uniform(size=n) > 0.05)  # some labelled rows unscored
    faults = {"code": ["AB-1", "ab-9", "ZZ-1", "AB-123456"], "label": ["c"], "note": ["nah", "x"],
              "score": [1.5, -0.1], "count": [13, 150, -4, 7], "level": [9], "fee": [0.0, 7.0, 99.0, 45.0],
              "seen_at": [pd.Timestamp("2019-05-05"), pd.Timestamp("2031-01-01")]}
    row = 10
    for column, values in faults.items():
        for value in values:
            df.loc[row, column] = value
            row += 7
    return df


@pytest.mark.parametrize("form", ["typed", "csv text"])
def test_a_schema_with_every_built_in_and_custom_checks(form, monkeypatch):
    df = _offers()
    df = as_csv_text(df) if form == "csv text" else df
    fast, slow = both(df, Offers, ("note",), monkeypatch)
    assert {"field_uniqueness", "even_count", "scored_when_labelled", "fee_within_count"} <= set(slow.failure_counts)
    assert_same(fast, slow)


JUNK = [None, np.nan, "", "abc", " 7 ", "inf", "-inf", -1, 2.5, 0, "2026-13-01", "2026-01-01T00:00:00", "ZZ-9",
        pd.NaT, True, 10**20, "AB-1", "a", "b", "none"]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("schema", ["offers", "loans"])
def test_randomly_broken_cells(schema, seed, monkeypatch):
    rng = np.random.default_rng(seed)
    df, model, personal = (_offers(), Offers, ("note",)) if schema == "offers" else (
        _broken_applications(seed), LOANS.schema_model(), LOANS.pii)
    df = df.astype(object)
    for _ in range(60):
        df.iat[rng.integers(len(df)), rng.integers(df.shape[1])] = JUNK[rng.integers(len(JUNK))]
    fast, slow = both(df, model, personal, monkeypatch, hand_over=True)
    assert not isinstance(slow, str)
    assert_same(fast, slow)


def test_only_int_and_float_failures_show_as_pandera_concatenates_them(monkeypatch):
    """With no failure of a text column, pandera's failure cases are all numbers: an int shows as a float."""
    df = _offers().iloc[:5].assign(count=[2, 4, -6, 8, 10], fee=[1.0, -2.0, 3.0, 4.0, 5.0], note="none")
    fast, slow = both(df, Offers, (), monkeypatch)
    assert slow.quarantined[REASONS].tolist() == ["fee: greater_than(0) (got -2.0)",
                                                  "count: greater_than_or_equal_to(0) (got -6.0)"]
    assert_same(fast, slow)


def test_batch_failures_are_the_same_violation(monkeypatch):
    class Totals(Offers):
        @pa.dataframe_check(name="few_unlabelled")
        def few_unlabelled(cls, df):  # noqa: N805
            return bool(df["label"].isna().mean() < 0.01)  # judges the batch: no row to blame

    fast, slow = both(_offers(), Totals, (), monkeypatch)
    assert slow.startswith("SchemaViolation: batch does not fit Totals: few_unlabelled failed for False")
    assert_same(fast, slow)
    fast, slow = both(_offers().drop(columns=["fee"]), Offers, (), monkeypatch)
    assert "missing columns ['fee']" in slow
    assert_same(fast, slow)


class Pairs(pa.DataFrameModel):
    key: Series[str]
    amount: Series[int]

    class Config:
        coerce = True
        unique = ["key", "amount"]  # a rule across columns the fast engine leaves to pandera


class Days(pa.DataFrameModel):
    key: Series[str]
    day: Series[pa.Date]  # text that is no date does not coerce: pandera reports the coercion

    @pa.check("key", name="short_key")
    def short_key(cls, key):  # noqa: N805
        return key.str.len() < 3 if key.iloc[0] != "boom" else key.str.nonexistent()  # raises on "boom"

    class Config:
        coerce = True


@pytest.mark.parametrize("frame, schema", [
    (pd.DataFrame({"key": ["a", "a", "b"], "amount": [1, 1, 2]}), Pairs),
    (pd.DataFrame({"key": ["a", "b", "c"], "day": ["2026-01-01", "nope", "2026-01-03"]}), Days),
    (pd.DataFrame({"key": ["boom", "b"], "day": ["2026-01-01", "2026-01-02"]}), Days),
], ids=["unique across columns", "coercion fails", "check raises"])
def test_what_the_fast_engine_does_not_run_goes_to_the_reference_whole(frame, schema, monkeypatch):
    handed, slow_engine = [], reference.split_valid_rows
    with monkeypatch.context() as patched:
        patched.setattr(reference, "split_valid_rows", lambda *args: handed.append(args) or slow_engine(*args))
        fast = _outcome(rules.split_valid_rows, frame, schema, ())
    assert len(handed) == 1
    slow = _outcome(slow_engine, frame, schema, ())
    assert not isinstance(slow, str) or "short_key failed for" in slow
    assert_same(fast, slow)


@pytest.mark.parametrize("plant", ["a reason shows personal data", "a check is named otherwise"])
def test_a_differing_outcome_is_caught(plant, monkeypatch):
    df = _broken_applications(1)
    if plant == "a reason shows personal data":
        monkeypatch.setattr(rules, "got", lambda value, personal: f"(got {value!r})")
    else:
        monkeypatch.setattr(schema_checks, "_identifier", lambda check: getattr(check, "name", check))
    fast, slow = both(df, LOANS.schema_model(), LOANS.pii, monkeypatch)
    with pytest.raises(AssertionError):
        assert_same(fast, slow)
