"""The daily partitions start at the first landed day that `generate` recorded, unless told otherwise."""

import os
import subprocess
import sys

import pytest

from platform_assets.ingest.partitions import (
    DEFAULT_START,
    PARTITIONS_START_ENV,
    PARTITIONS_START_FILE,
    partitions_start,
    record_partitions_start,
)
from tests.conftest import PROJECT_ROOT


def test_the_variable_wins_then_the_recorded_day_then_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv(PARTITIONS_START_ENV, raising=False)
    assert partitions_start(tmp_path) == DEFAULT_START
    record_partitions_start("2026-09-24", tmp_path)
    assert partitions_start(tmp_path) == "2026-09-24"
    monkeypatch.setenv(PARTITIONS_START_ENV, "2026-01-05")
    assert partitions_start(tmp_path) == "2026-01-05"


def test_a_recorded_value_that_is_not_a_day_is_named_in_the_error(tmp_path, monkeypatch):
    monkeypatch.delenv(PARTITIONS_START_ENV, raising=False)
    (tmp_path / PARTITIONS_START_FILE).write_text("yesterday\n")
    with pytest.raises(ValueError, match=f"{PARTITIONS_START_FILE}: 'yesterday' is not a day"):
        partitions_start(tmp_path)


def test_generate_records_the_first_landed_day_for_later_processes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != PARTITIONS_START_ENV}
    env["PLATFORM_HOME"] = str(tmp_path)

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("-m", "platform_assets", "generate", "--days", "3", "--rows-per-day", "20", "--start", "2026-10-01")
    # A later batch starting after the first keeps the first landed day as the start.
    run("-m", "platform_assets", "generate", "--days", "2", "--rows-per-day", "20", "--start", "2026-10-20")
    assert (tmp_path / PARTITIONS_START_FILE).read_text().strip() == "2026-10-01"
    # What `make ui` loads later, in another process: the partitions begin on that day.
    first = run("-c", "from platform_assets.defs.ingest.partitions import DAILY_PARTITIONS as p; print(p.get_first_partition_key())")
    assert first.strip() == "2026-10-01"
    assert run("-m", "platform_assets", "landing-days").strip() == "2026-10-01...2026-10-21"
