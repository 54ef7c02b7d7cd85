"""The bad-input corpus: each broken file is rejected with a clear error, or its rows quarantined with reasons.

Nothing is lost: files in = accepted + rejected, raw rows = validated + quarantined.
"""

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from platform_assets import definitions, settings
from platform_assets.domain import COLUMNS
from platform_assets.ingest.landing import list_landing_files, read_landing
from platform_assets.validate.rules import REASONS, split_valid_rows
from tests.conftest import day_range_tags, write_sample_landing

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
    "truncated_last_line": (None, 5, 1, "label_ts: missing"),
    "wrong_types": (None, 5, 1, "income: not a finite number (got 'abc')"),
    "nan_and_infinity": (None, 5, 2, "debt_to_income: not a finite number (got 'inf')"),  # and income: missing
    "negative_amounts": (None, 5, 1, "loan_amount: greater_than(0)"),
    "duplicate_keys": (None, 5, 2, "application_id: field_uniqueness"),
    "future_timestamps": (None, 5, 1, "application_ts: not_in_the_future"),
    "huge_field": (None, 5, 1, "chars)"),
}


def test_the_corpus_has_every_case():
    cases = {p.name for p in CORPUS.iterdir() if p.is_dir()}
    assert cases == set(EXPECTED) and len(cases) >= 15


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_input(case):
    error, rows, quarantined, reason = EXPECTED[case]
    urls = list_landing_files(str(CORPUS / case))
    assert len(urls) == 1
    df, accepted, rejected = read_landing(urls, COLUMNS)
    assert len(accepted) + len(rejected) == 1
    if error:
        assert [r.path for r in rejected] == urls
        assert urls[0] in rejected[0].error and error in rejected[0].error
        assert df.empty
        return
    assert not rejected and len(df) == rows == accepted[0].rows
    result = split_valid_rows(df)
    assert len(result.valid) + len(result.quarantined) == rows
    assert len(result.quarantined) == quarantined
    if reason:
        reasons = result.quarantined[REASONS].tolist()
        assert reason in " | ".join(reasons), reasons
        assert all(0 < len(r) < 400 for r in reasons)
        assert result.quarantined["_source_row"].between(1, rows).all()
    if case == "extra_column":
        assert accepted[0].extra_columns == ("favourite_colour",)


def test_ingest_and_validate_the_whole_corpus_beside_good_files(tmp_path):
    rows_good = write_sample_landing(tmp_path, days=3, rows_per_day=100)
    landing = settings.paths(tmp_path).landing
    for i, case in enumerate(sorted(EXPECTED)):
        source = next((CORPUS / case).iterdir())
        # Distinct days so that files do not overwrite each other; the dotdot name is kept as is.
        target = source.name if case == "dotdot_name" else source.name.replace("2026-01-01", f"2025-12-{i + 1:02d}")
        shutil.copyfile(source, landing / target)
    resources = definitions.build_resources(tmp_path)
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        result = dg.materialize(
            [*dg.load_assets_from_modules(definitions.ASSET_MODULES[:2]),
             *dg.load_asset_checks_from_modules(definitions.CHECK_MODULES[:2])],
            resources=resources,
            instance=instance,
            selection="group:ingest or group:validate",
            tags=day_range_tags("2025-12-01", "2026-09-03"),  # every day of the corpus and the good files
            raise_on_error=False,
        )
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["validation_conserves_rows"] and checks["raw_applications_files_read_whole"]
    assert checks["landing_files_all_accepted"] is False  # a warning listing the rejected files
    with duckdb.connect(str(settings.paths(tmp_path).warehouse), read_only=True) as con:
        count = lambda table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: E731
        accepted, rejected = count("raw.landing_files"), count("raw.rejected_files")
        raw, valid, quarantined = count("raw.applications"), count("validated.applications"), count("quarantine.applications")
    bad_files = sum(1 for e in EXPECTED.values() if e[0])
    assert (accepted, rejected) == (3 + len(EXPECTED) - bad_files, bad_files)
    assert raw == rows_good + sum(e[1] for e in EXPECTED.values() if not e[0])
    assert raw == valid + quarantined
    assert quarantined >= sum(e[2] for e in EXPECTED.values())


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
    df, accepted, rejected = read_landing(urls, COLUMNS)
    assert len(df) == 5 and len(accepted) == 1 and "file is empty" in rejected[0].error
