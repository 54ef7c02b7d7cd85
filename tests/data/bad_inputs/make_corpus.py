"""Writes the bad-input corpus next to this file (run once; the files are committed).

Each file is a small landing file broken in one way; tests/integration/
test_bad_inputs.py states what must happen to each.
"""

import datetime as dt
from pathlib import Path

import pandas as pd

from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications

HERE = Path(__file__).resolve().parent


def base(case: str = "") -> pd.DataFrame:
    """Five valid rows; ids carry the case name, so that cases validated together never share an id."""
    df = generate_applications(GeneratorConfig(start_date=dt.date(2026, 1, 1), days=1, rows_per_day=5, dirty_fraction=0))
    df = df.head(5).reset_index(drop=True)
    return df.assign(application_id=f"{case}-" + df["application_id"]) if case else df


def csv(df: pd.DataFrame, **kwargs) -> bytes:
    return df.to_csv(index=False, **kwargs).encode()


def jsonl(df: pd.DataFrame) -> bytes:
    return df.to_json(orient="records", lines=True, date_format="iso").encode()


def personal_data_cases() -> dict[str, bytes]:
    """Cases about personal data: empty and mixed PII columns, PII in invalid values, half-written rows."""
    files = {}
    df = base("all_null_email")
    files["all_null_email"] = csv(df.assign(email=None))
    df = base("all_null_phone")
    files["all_null_phone"] = csv(df.assign(phone=None))
    # JSON keeps types: missing, numbers and text in one column (rows 1 and 2 fail on email, row 4 on phone).
    df = base("mixed_types").astype({"email": object, "phone": object})
    df["email"] = [None, 12345, *df["email"][2:]]
    df["phone"] = [447700900001, *df["phone"][1:3], None, 447700900005]
    files["mixed_types"] = jsonl(df)
    # Values that are personal data and invalid: a reason must not repeat them.
    df = base("pii_in_invalid_values")
    df.loc[0, ["applicant_name", "email"]] = ["Jane Doe", "Jane Doe@example.com"]
    df.loc[1, ["applicant_name", "phone"]] = ["Jane Doe", "call +44 7700 900123"]
    df.loc[2, ["applicant_name", "email", "phone"]] = ["Jane Doe", "jane.doe@@example", "+44 7700 900123 ext 7"]
    files["pii_in_invalid_values"] = csv(df)
    # A file caught while being written: the last row stops inside the name, no newline.
    good = csv(base("half_written"))
    files["half_written"] = good[: good.rindex(b"Femi Garcia") + len("Femi Gar")]
    return files


def truncated(content: bytes) -> bytes:
    return content.rstrip(b"\n").rsplit(b",", 6)[0] + b"\n"


def not_utf8(content: bytes) -> bytes:
    """Row 3 (the third data row) gets bytes that are not UTF-8."""
    lines = content.split(b"\n")
    lines[3] = lines[3].replace(b",", b",\xff\xfe", 1)
    return b"\n".join(lines)


# case -> the file made from that case's five valid rows
CASES = {
    "header_only": lambda df: csv(df.head(0)),
    "truncated_last_line": lambda df: truncated(csv(df)),
    "wrong_delimiter": lambda df: csv(df, sep=";"),
    "missing_column": lambda df: csv(df.drop(columns=["region"])),
    "extra_column": lambda df: csv(df.assign(favourite_colour="blue")),
    "wrong_types": lambda df: csv(df.astype({"income": object}).assign(income=["abc", *df["income"][1:]])),
    "nan_and_infinity": lambda df: csv(df.assign(debt_to_income=["inf", *df["debt_to_income"][1:]],
                                                 income=[df["income"][0], "nan", *df["income"][2:]])),
    "negative_amounts": lambda df: csv(df.assign(loan_amount=[-100.0, *df["loan_amount"][1:]])),
    # Row 2 repeats row 1's id with a later time; in the next case row 2 is row 1 again, at the same time.
    "duplicate_keys": lambda df: csv(df.assign(application_id=[df["application_id"][0], *df["application_id"][:4]])),
    "duplicate_rows_same_time": lambda df: csv(pd.concat([df.head(1), df.head(4)], ignore_index=True)),
    "future_timestamps": lambda df: csv(df.assign(
        application_ts=[pd.Timestamp("2100-01-01"), *df["application_ts"][1:]],
        label_ts=[pd.Timestamp("2100-02-01"), *df["label_ts"][1:]])),
    "huge_field": lambda df: csv(df.assign(region=["x" * 1_000_000, *df["region"][1:]])),
    "broken_jsonl": lambda df: jsonl(df)[:-40] + b"\n{not json\n",
    "non_utf8": lambda df: not_utf8(csv(df)),
}


def main() -> None:
    files: dict[str, bytes] = {
        "empty": b"",
        "corrupt_parquet": b"PAR1 this is not really parquet PAR1",
        "zero_byte_parquet": b"",
        **{case: make(base(case)) for case, make in CASES.items()},
        **personal_data_cases(),
    }
    suffix = {"broken_jsonl": "jsonl", "mixed_types": "jsonl", "corrupt_parquet": "parquet", "zero_byte_parquet": "parquet"}
    for case, content in files.items():
        folder = HERE / case
        folder.mkdir(exist_ok=True)
        (folder / f"applications_2026-01-01.{suffix.get(case, 'csv')}").write_bytes(content)
    dotdot = HERE / "dotdot_name"
    dotdot.mkdir(exist_ok=True)
    (dotdot / "applications_2026-01-01..csv").write_bytes(csv(base("dotdot_name")))


if __name__ == "__main__":
    main()
