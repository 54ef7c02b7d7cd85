"""The bad-input corpus: each broken file is rejected with a clear error, or its rows quarantined with reasons.

Nothing is lost: files in = accepted + rejected, raw rows = validated + quarantined, exactly, per case;
and no quarantine reason repeats a name, email or phone of its row.
"""

import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from platform_assets import definitions, settings
from platform_assets.declared import use_case
from platform_assets.ingest.landing import list_landing_files, read_landing
from platform_assets.validate.duplicates import split_batch
from platform_assets.validate.pii import MASKED_PATTERN, mask_pii
from platform_assets.validate.rules import REASONS
from tests.conftest import day_range_tags, daily_selection, ingest_days, loan_definitions, write_sample_landing

SOURCE = use_case("loan_default").source
PII_COLUMNS = SOURCE.pii

CORPUS = Path(__file__).resolve().parent.parent / "data" / "bad_inputs"

# case -> rejected error (None when the file is accepted), rows read, rows quarantined, reason fragment
EXPECTED = {
    "empty": ("file is empty (0 bytes)", 0, 0, None),
    "zero_byte_parquet": ("file is empty (0 bytes)", 0, 0, None),
    "corrupt_parquet": ("not a readable Parquet file", 0, 0, None),
    "wrong_delimiter": ("wrong delimiter?", 0, 0, None),
    "non_utf8": ("data row 3: not UTF-8 (byte 0xff", 0, 0, None),
    "missing_column": ("missing columns ['region']", 0, 0, None),
    "broken_jsonl": ("cannot be parsed", 0, 0, None),
    "dotdot_name": ("unexpected file name", 0, 0, None),
    "header_only": (None, 0, 0, None),
    "extra_column": (None, 5, 0, None),
    # The cut-off row lacks its last six fields; an empty outcome alone is no fault (outcomes may come later).
    "truncated_last_line": (None, 5, 1, "num_delinquencies: missing; debt_to_income: missing; region: missing; "
                                        "age_band: missing"),
    "wrong_types": (None, 5, 1, "income: not a finite number (got 'abc')"),
    "nan_and_infinity": (None, 5, 2, "debt_to_income: not a finite number (got 'inf')"),  # and income: missing
    "negative_amounts": (None, 5, 1, "loan_amount: greater_than(0)"),
    "duplicate_keys": (None, 5, 1, "application_id: duplicate of {file}:1"),  # the later copy only
    "duplicate_rows_same_time": (None, 5, 1, "application_id: duplicate of {file}:1"),  # the later row
    "future_timestamps": (None, 5, 1, "application_ts: not_in_the_future"),
    "huge_field": (None, 5, 1, "chars)"),
    "all_null_email": (None, 5, 5, "email: missing"),
    "all_null_phone": (None, 5, 5, "phone: missing"),
    "mixed_types": (None, 5, 3, "email: valid_email (value withheld: personal data)"),
    "pii_in_invalid_values": (None, 5, 3, "phone: valid_phone_number (value withheld: personal data)"),
    "half_written": (None, 5, 1, "email: missing; phone: missing"),
}
# Cases whose quarantine holds a whole column of missing personal data, or a mix of types in one.
ONE_DAY_ALONE = ("all_null_email", "all_null_phone", "mixed_types", "half_written")


def leaked_values(quarantined) -> list[str]:
    """Names, emails and phones (as they came in) that appear in their own row's reasons."""
    return [
        str(row[c]) for _, row in quarantined.iterrows() for c in PII_COLUMNS
        if isinstance(row[c], (str, int, float)) and len(str(row[c]).strip()) >= 4 and str(row[c]).strip() in row[REASONS]
    ]


def test_the_corpus_has_every_case():
    cases = {p.name for p in CORPUS.iterdir() if p.is_dir()}
    assert cases == set(EXPECTED) and len(cases) >= 15


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_input(case):
    error, rows, quarantined, reason = EXPECTED[case]
    urls = list_landing_files(str(CORPUS / case))
    assert len(urls) == 1
    df, accepted, rejected = read_landing(urls, SOURCE)
    assert len(accepted) + len(rejected) == 1
    if error:
        assert [r.path for r in rejected] == urls
        assert urls[0] in rejected[0].error and error in rejected[0].error
        assert df.empty
        return
    assert not rejected and len(df) == rows == accepted[0].rows
    result = split_batch(df, SOURCE)
    assert len(result.valid) + len(result.quarantined) == rows
    assert len(result.quarantined) == quarantined
    assert leaked_values(result.quarantined) == []
    masked = mask_pii(result.quarantined, PII_COLUMNS, "a-test-key")  # a column of gaps or of mixed types masks
    assert all(v is None or re.fullmatch(MASKED_PATTERN, v) for v in masked[list(PII_COLUMNS)].to_numpy().ravel())
    if reason:
        reasons = result.quarantined[REASONS].tolist()
        assert reason.format(file=urls[0]) in " | ".join(reasons), reasons
        assert all(0 < len(r) < 400 for r in reasons)
        assert result.quarantined["_source_row"].between(1, rows).all()
    if case == "extra_column":
        assert accepted[0].extra_columns == ("favourite_colour",)


def test_ingest_and_validate_the_whole_corpus_beside_good_files(tmp_path):
    rows_good = write_sample_landing(tmp_path, days=3, rows_per_day=100)
    landing = settings.paths(tmp_path).landing / SOURCE.landing_folder
    day_of = {case: f"2025-12-{i + 1:02d}" for i, case in enumerate(sorted(EXPECTED))}
    for i, case in enumerate(sorted(EXPECTED)):
        source = next((CORPUS / case).iterdir())
        # Distinct days so that files do not overwrite each other; the dotdot name is kept as is.
        target = source.name if case == "dotdot_name" else source.name.replace("2026-01-01", f"2025-12-{i + 1:02d}")
        shutil.copyfile(source, landing / target)
    resources = definitions.embedded_resources(tmp_path)
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        result = dg.materialize(
            [*loan_definitions().assets, *loan_definitions().asset_checks],
            resources=resources,
            instance=instance,
            selection=daily_selection(),
            tags=day_range_tags("2025-12-01", "2026-09-03"),  # every day of the corpus and the good files
            raise_on_error=False,
        )
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["validation_conserves_rows"] and checks["landing_files_read_whole"]
    assert checks["pii_is_masked"]
    assert checks["landing_files_all_accepted"] is False  # a warning listing the rejected files
    with duckdb.connect(str(settings.paths(tmp_path).warehouse), read_only=True) as con:
        count = lambda table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
        accepted, rejected = count("raw.applications_landing_files"), count("raw.applications_rejected_files")
        raw, valid, quarantined = count("raw.applications"), count("validated.applications"), count("quarantine.applications")
        per_day = {
            table: dict(con.execute(f"SELECT _partition, count(*) FROM {table} GROUP BY ALL").fetchall())
            for table in ("raw.applications", "validated.applications", "quarantine.applications")
        }
        # The quarantined rows as they came in, beside the reasons that were written for them.
        raw_quarantined = con.execute(
            "SELECT r.*, q._quarantine_reasons FROM raw.applications r "
            "JOIN quarantine.applications q USING (_source_file, _source_row)"
        ).df()
    bad_files = sum(1 for e in EXPECTED.values() if e[0])
    assert (accepted, rejected) == (3 + len(EXPECTED) - bad_files, bad_files)
    assert raw == rows_good + sum(e[1] for e in EXPECTED.values() if not e[0])
    assert raw == valid + quarantined
    for case, (error, rows, quarantined_rows, _) in EXPECTED.items():
        day = day_of[case]
        got = tuple(per_day[t].get(day, 0) for t in ("raw.applications", "validated.applications", "quarantine.applications"))
        assert got == (rows, rows - quarantined_rows, quarantined_rows), case
    # The good days: only the rows the generator broke on purpose (no duplicates among them).
    good_days = [d for d in per_day["raw.applications"] if d.startswith("2026-09")]
    assert sum(per_day["quarantine.applications"].get(d, 0) for d in good_days) == round(rows_good * 0.005)
    assert len(raw_quarantined) == quarantined and leaked_values(raw_quarantined) == []


def test_landing_can_be_any_fsspec_url():
    """The reader takes URLs: here fsspec's in-memory filesystem stands in for a bucket."""
    import fsspec

    fs = fsspec.filesystem("memory")
    good = next((CORPUS / "extra_column").iterdir()).read_bytes()
    fs.pipe("/bucket/landing/applications_2026-01-02.csv", good)
    fs.pipe("/bucket/landing/applications_2026-01-03.csv", b"")
    urls = list_landing_files("memory://bucket/landing")
    assert all(u.startswith("memory://") for u in urls)
    assert [u.rsplit("/", 1)[-1] for u in urls] == ["applications_2026-01-02.csv", "applications_2026-01-03.csv"]
    df, accepted, rejected = read_landing(urls, SOURCE)
    assert len(df) == 5 and len(accepted) == 1 and "file is empty" in rejected[0].error


def test_a_day_whose_quarantine_has_no_or_mixed_personal_data_loses_no_row(tmp_path):
    """Each case alone in its day and its run: the quarantine's PII columns are all missing, or of mixed types."""
    landing = settings.paths(tmp_path).landing / SOURCE.landing_folder
    landing.mkdir(parents=True)
    resources = definitions.embedded_resources(tmp_path)
    for i, case in enumerate(ONE_DAY_ALONE):
        source = next((CORPUS / case).iterdir())
        day = f"2025-12-{i + 1:02d}"
        shutil.copyfile(source, landing / source.name.replace("2026-01-01", day))
        result = ingest_days(resources, day, day)
        written = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert {"loan_default/validated/applications", "loan_default/quarantine/applications"} <= written, case
        checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["validation_conserves_rows"] and checks["pii_is_masked"], case
        # Most of such a day is quarantined: the blocking gate stops what is downstream, as it should.
        assert checks["quarantine_rate_under_threshold"] is False, case
        _, rows, quarantined, _ = EXPECTED[case]
        with duckdb.connect(str(settings.paths(tmp_path).warehouse), read_only=True) as con:
            got = tuple(
                con.execute(f"SELECT count(*) FROM {table} WHERE _partition = ?", [day]).fetchone()[0]
                for table in ("raw.applications", "validated.applications", "quarantine.applications")
            )
        assert got == (rows, rows - quarantined, quarantined), case
