"""Shared fixtures: every test works under a temporary state root and DAGSTER_HOME."""

from __future__ import annotations

import datetime as dt
import gc
import os
from pathlib import Path

import pytest

# The tests' days start in 2025-12; a first day recorded by `make demo` under .platform must not apply.
os.environ["PLATFORM_PARTITIONS_START"] = "2025-01-01"

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVING_PYTHON = PROJECT_ROOT / ".venv-serving" / "bin" / "python"
SHARED = PROJECT_ROOT.parent / "shared"


def pytest_collection_finish(session):
    """Undoes the ``gc.freeze()`` of ``platform_assets.definitions`` for the test session.

    Test modules import duckdb before the definitions; frozen DuckDB objects are
    never freed, and DuckDB's bindings then print pages of "leaked" at exit.
    """
    gc.unfreeze()


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    """Points PLATFORM_HOME, DAGSTER_HOME and MLflow at temporary folders: never the user's state."""
    root = tmp_path_factory.mktemp("platform_home")
    monkeypatch.setenv("PLATFORM_HOME", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (root / "dagster_home").mkdir()
    yield root


def write_sample_landing(
    root: Path, days: int = 40, rows_per_day: int = 300, start: dt.date = dt.date(2026, 9, 1), **kwargs
) -> int:
    """Writes generated landing files (one per day from ``start``) under ``root``; returns the number of rows."""
    from platform_assets import settings
    from platform_assets.use_cases.loan_default.generator import GeneratorConfig, generate_applications, write_landing_files

    config = GeneratorConfig(
        start_date=start, days=days, rows_per_day=rows_per_day, **kwargs
    )
    df = generate_applications(config)
    write_landing_files(df, settings.paths(root).landing)
    return len(df)


def day_range_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that target the daily partitions ``first`` to ``last`` in one run (single-run backfill)."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def _everything():
    import dagster as dg

    from platform_assets import definitions

    return [*dg.load_assets_from_modules(definitions.ASSET_MODULES),
            *dg.load_asset_checks_from_modules(definitions.CHECK_MODULES)]


def ingest_days(resources, first: str, last: str, instance=None):
    """Ingests and validates the days ``first``..``last`` in one run; returns its result."""
    import dagster as dg

    return dg.materialize(_everything(), resources=resources, instance=instance, raise_on_error=False,
                          selection="group:ingest or group:validate", tags=day_range_tags(first, last))


def materialize_graph(instance, resources, first: str, last: str, downstream: bool = True) -> list:
    """Materializes the days ``first``..``last`` of ingest and validation, then (optionally) the rest.

    Returns the results of the runs, as ``make materialize`` does them: the
    partitioned data assets for the range, then everything downstream.
    """
    import dagster as dg

    results = [ingest_days(resources, first, last, instance)]
    if downstream and results[0].success:
        results.append(dg.materialize(_everything(), resources=resources, instance=instance, raise_on_error=False,
                                      selection="not (group:ingest or group:validate or group:monitor)"))
    return results
