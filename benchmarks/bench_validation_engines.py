"""pandera on pandas against pandera on polars: the same rules over the same typed rows.

The platform validates with pandera on pandas (``ApplicationSchema``). This
benchmark writes the same model for pandera's polars backend and times both on
the same generated batches (0.5% dirty rows, so failure cases are collected),
at 100k and 1M rows. It needs ``polars``, which the platform does not depend
on; without it the polars rows say so:

    pip install --target /tmp/polars-pkg polars
    PYTHONPATH=/tmp/polars-pkg .venv/bin/python benchmarks/bench_validation_engines.py

Prints a table and writes ``benchmarks/out/validation_engines.json``.
"""


import argparse
import datetime as dt
import json
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def _polars_model():
    import pandera.polars as pap
    import polars as pl

    from platform_assets.use_cases.loan_default.vocabulary import AGE_BANDS, REGIONS, TERMS_MONTHS
    from platform_assets.use_cases.loan_default.schema import MAX_LOAN_TO_INCOME

    class ApplicationSchemaPolars(pap.DataFrameModel):
        application_id: str = pap.Field(unique=True, nullable=False)
        applicant_id: int = pap.Field(ge=0)
        applicant_name: str = pap.Field(nullable=False)
        email: str = pap.Field(str_matches=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
        phone: str = pap.Field(str_matches=r"^\+?[0-9 ()-]{7,20}$")
        application_ts: pl.Datetime = pap.Field(nullable=False)
        income: float = pap.Field(gt=0)
        loan_amount: float = pap.Field(gt=0)
        term_months: int = pap.Field(isin=list(TERMS_MONTHS))
        employment_years: float = pap.Field(ge=0, nullable=False)
        credit_history_years: float = pap.Field(ge=0)
        num_open_accounts: int = pap.Field(ge=0)
        num_delinquencies: int = pap.Field(ge=0)
        debt_to_income: float = pap.Field(ge=0, le=1)
        region: str = pap.Field(isin=list(REGIONS))
        age_band: str = pap.Field(isin=list(AGE_BANDS))
        is_default: int = pap.Field(isin=[0, 1])
        label_ts: pl.Datetime = pap.Field(nullable=False)

        @pap.dataframe_check(name="loan_within_income_multiple")
        def loan_within_income_multiple(cls, data):  # noqa: N805
            return data.lazyframe.select(pl.col("loan_amount") <= MAX_LOAN_TO_INCOME * pl.col("income").abs())

        @pap.check("application_ts", name="not_in_the_future")
        def not_in_the_future(cls, data):  # noqa: N805
            return data.lazyframe.select(pl.col(data.key) <= dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))

        @pap.dataframe_check(name="label_after_application")
        def label_after_application(cls, data):  # noqa: N805
            return data.lazyframe.select(pl.col("label_ts") >= pl.col("application_ts"))

        class Config:
            coerce = True  # as ApplicationSchema
            strict = False

    return ApplicationSchemaPolars


def _timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], result


def _failures(validate) -> int:
    """The number of distinct rows with a failure (both engines report an ``index`` per failure case)."""
    import pandera.errors

    try:
        validate()
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        index = cases["index"] if hasattr(cases, "iloc") else cases["index"].to_pandas()
        return int(index.dropna().nunique())
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from platform_assets.use_cases.loan_default.vocabulary import COLUMNS
    from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications
    from platform_assets.validate.rules import parse_types
    from platform_assets.use_cases.loan_default.schema import ApplicationSchema

    try:
        import polars as pl

        polars_model = _polars_model()
    except ImportError as exc:
        pl, polars_model = None, None
        print(f"polars not importable ({exc}): only pandas is measured")
    rows = []
    for size in args.sizes:
        first_day = dt.date.today() - dt.timedelta(days=100)
        raw = generate_applications(GeneratorConfig(start_date=first_day, days=100, rows_per_day=size // 100))
        typed, _ = parse_types(raw[list(COLUMNS)], ApplicationSchema)  # both engines get the same typed rows
        typed = typed.dropna(subset=["application_ts", "label_ts", "application_id", "applicant_name", "employment_years"])
        n = len(typed)
        t, _ = _timed(lambda: _failures(lambda: ApplicationSchema.validate(typed, lazy=True)), args.repeat)
        failures = _failures(lambda: ApplicationSchema.validate(typed, lazy=True))
        rows.append({"engine": "pandas", "rows": n, "seconds": t, "rows_per_s": n / t, "failing_rows": failures})
        if polars_model is not None:
            convert, frame = _timed(lambda: pl.from_pandas(typed), args.repeat)
            t, _ = _timed(lambda: _failures(lambda: polars_model.validate(frame, lazy=True)), args.repeat)
            failures = _failures(lambda: polars_model.validate(frame, lazy=True))
            rows.append({"engine": "polars", "rows": n, "seconds": t, "rows_per_s": n / t, "failing_rows": failures,
                         "convert_from_pandas_s": convert})
    print(f"{'engine':8} {'rows':>10} {'validate s':>11} {'rows/s':>12} {'failing rows':>14} {'from pandas s':>14}")
    for r in rows:
        convert = f"{r['convert_from_pandas_s']:.2f}" if "convert_from_pandas_s" in r else "-"
        print(f"{r['engine']:8} {r['rows']:>10,} {r['seconds']:>11.2f} {r['rows_per_s']:>12,.0f} "
              f"{r['failing_rows']:>14,} {convert:>14}")
    OUT.mkdir(exist_ok=True)
    (OUT / "validation_engines.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
