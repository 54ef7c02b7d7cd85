"""The ingest checks fail on planted faults: files with wrong names, a lost file, a row missing, a file changed."""

import re

import dagster as dg
import duckdb
import pytest

from platform_assets import definitions, settings
from tests.conftest import ingest_days, loan, loan_check, write_sample_landing


def _checks(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _run(check, resources):
    landing = {"landing": resources["landing"]} if check is loan_check("landing_files_found_were_read") else {}
    return check(context=dg.build_asset_check_context(), warehouse=resources["warehouse"], **landing)


def _sql(root, statement, params=()):
    with duckdb.connect(str(settings.paths(root).warehouse)) as con:
        con.execute(statement, list(params))


@pytest.fixture
def ingested(tmp_path):
    """Three good days ingested and validated in one run."""
    rows = write_sample_landing(tmp_path, days=3, rows_per_day=100)
    resources = definitions.embedded_resources(tmp_path)
    result = ingest_days(resources, "2026-09-01", "2026-09-03")
    assert result.success
    return tmp_path, resources, result, rows


def test_the_ingest_checks_pass_on_good_files_with_counts_from_the_files(ingested):
    _, _, result, rows = ingested
    checks = _checks(result)
    found, whole = checks["landing_files_found_were_read"], checks["landing_files_read_whole"]
    assert found.passed and whole.passed
    assert found.metadata["files_found"].value == 3 and found.metadata["rows_read"].value == rows
    assert whole.metadata["rows_counted_in_files"].value == rows


def test_files_all_named_wrongly_fail_the_run_naming_the_pattern(tmp_path):
    """A new source's files (cards_*.parquet) land where applications are expected: 0 rows must not pass."""
    write_sample_landing(tmp_path, days=2, rows_per_day=50)
    landing = settings.paths(tmp_path).landing / "applications"
    for path in sorted(landing.iterdir()):
        path.rename(path.with_name(path.name.replace("applications_", "cards_")))
    result = ingest_days(definitions.embedded_resources(tmp_path), "2026-09-01", "2026-09-02")
    assert not result.success
    check = _checks(result)["landing_files_found_were_read"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["rows_read"].value == 0 and check.metadata["files_fitting_no_day"].value == 2
    assert "want applications_YYYY-MM-DD" in check.description
    assert "cards_2026-09-01.parquet" in check.metadata["problems"].value
    # Blocking: nothing was validated from the empty read.
    written = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert written == {"loan_default/raw/applications"}


def test_a_day_without_rows_in_a_range_warns_without_blocking(tmp_path):
    write_sample_landing(tmp_path, days=2, rows_per_day=50)
    result = ingest_days(definitions.embedded_resources(tmp_path), "2026-09-01", "2026-09-03")  # no file for 09-03
    check = _checks(result)["landing_files_found_were_read"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "2026-09-03" in check.metadata["problems"].value
    assert result.success  # a warning: the other days flow on


def test_a_file_found_but_not_recorded_fails(ingested):
    root, resources, _, _ = ingested
    assert _run(loan_check("landing_files_found_were_read"), resources).passed
    _sql(root, "DELETE FROM raw.applications_landing_files WHERE path LIKE '%2026-09-02%'")
    check = _run(loan_check("landing_files_found_were_read"), resources)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "applications_2026-09-02.parquet: found in the landing folder but neither read nor rejected" in check.description


def test_files_read_whole_fails_on_a_missing_row_and_on_a_changed_file(ingested):
    root, resources, _, _ = ingested
    assert _run(loan_check("landing_files_read_whole"), resources).passed
    _sql(root, "DELETE FROM raw.applications WHERE _partition = '2026-09-01' AND _source_row = 7")
    check = _run(loan_check("landing_files_read_whole"), resources)
    differing = check.metadata["differing_files"].value
    assert not check.passed and len(differing) == 1
    (path, why), = differing.items()
    assert path.endswith("applications_2026-09-01.parquet") and re.fullmatch(r"(\d+) rows in the file, \d+ in raw.applications", why)
    counted, held = map(int, re.findall(r"\d+", why))
    assert counted == held + 1
    # A file rewritten after it was read cannot be taken as recounted.
    target = settings.paths(root).landing / "applications" / "applications_2026-09-02.parquet"
    target.write_bytes(target.read_bytes() + b"appended")
    differing = _run(loan_check("landing_files_read_whole"), resources).metadata["differing_files"].value
    assert "changed since it was read" in differing[str(target)]


def test_latest_day_fresh_warns_on_a_stale_newest_day_and_holds_on_yesterday(ingested):
    """The newest ingested day (2026-09-03) against the clock: weeks old warns; moved to yesterday, it holds."""
    import datetime as dt

    from platform_assets.defs.ingest.checks import FreshnessConfig

    root, resources, _, _ = ingested
    check = loan_check("latest_day_fresh")
    stale = check(config=FreshnessConfig(), warehouse=resources["warehouse"])
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.WARN
    assert stale.metadata["latest_partition"].value == "2026-09-03"
    yesterday = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
    _sql(root, f"UPDATE {loan().source.raw_table} SET _partition = ? "
               "WHERE _partition = '2026-09-03'", [yesterday])
    fresh = check(config=FreshnessConfig(), warehouse=resources["warehouse"])
    assert fresh.passed and fresh.metadata["latest_partition"].value == yesterday
