"""Writes the bad-input corpus next to this file (run once; the files are committed).

Each file is a small landing file broken in one way; tests/integration/
test_bad_inputs.py states what must happen to each.
"""

import datetime as dt
from pathlib import Path

import pandas as pd

from platform_assets.sample_data.generator import GeneratorConfig, generate_applications

HERE = Path(__file__).resolve().parent


def base() -> pd.DataFrame:
    df = generate_applications(GeneratorConfig(start_date=dt.date(2026, 1, 1), days=1, rows_per_day=5, dirty_fraction=0))
    return df.head(5).reset_index(drop=True)


def csv(df: pd.DataFrame, **kwargs) -> bytes:
    return df.to_csv(index=False, **kwargs).encode()


def main() -> None:
    df = base()
    good = csv(df)
    files: dict[str, bytes] = {
        "empty": b"",
        "header_only": csv(df.head(0)),
        "truncated_last_line": good.rstrip(b"\n").rsplit(b",", 6)[0] + b"\n",
        "wrong_delimiter": csv(df, sep=";"),
        "missing_column": csv(df.drop(columns=["region"])),
        "extra_column": csv(df.assign(favourite_colour="blue")),
        "wrong_types": csv(df.astype({"income": object}).assign(income=["abc", *df["income"][1:]])),
        "nan_and_infinity": csv(df.assign(debt_to_income=["inf", *df["debt_to_income"][1:]],
                                          income=[df["income"][0], "nan", *df["income"][2:]])),
        "negative_amounts": csv(df.assign(loan_amount=[-100.0, *df["loan_amount"][1:]])),
        "duplicate_keys": csv(df.assign(application_id=[df["application_id"][0], *df["application_id"][:4]])),
        "future_timestamps": csv(df.assign(
            application_ts=[pd.Timestamp("2100-01-01"), *df["application_ts"][1:]],
            label_ts=[pd.Timestamp("2100-02-01"), *df["label_ts"][1:]])),
        "huge_field": csv(df.assign(region=["x" * 1_000_000, *df["region"][1:]])),
        "broken_jsonl": df.to_json(orient="records", lines=True, date_format="iso").encode()[:-40] + b"\n{not json\n",
        "corrupt_parquet": b"PAR1 this is not really parquet PAR1",
        "zero_byte_parquet": b"",
    }
    # Row 3 (the third data row) gets bytes that are not UTF-8.
    lines = good.split(b"\n")
    lines[3] = lines[3].replace(b",", b",\xff\xfe", 1)
    files["non_utf8"] = b"\n".join(lines)
    suffix = {"broken_jsonl": "jsonl", "corrupt_parquet": "parquet", "zero_byte_parquet": "parquet"}
    for case, content in files.items():
        folder = HERE / case
        folder.mkdir(exist_ok=True)
        (folder / f"applications_2026-01-01.{suffix.get(case, 'csv')}").write_bytes(content)
    dotdot = HERE / "dotdot_name"
    dotdot.mkdir(exist_ok=True)
    (dotdot / "applications_2026-01-01..csv").write_bytes(good)


if __name__ == "__main__":
    main()
