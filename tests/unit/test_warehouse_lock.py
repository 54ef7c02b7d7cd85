"""Warehouse.connect waits for another process's lock on the DuckDB file, for a bounded time."""

import subprocess
import sys
import threading
import time

import pytest

from platform_assets.resources import Warehouse


@pytest.fixture
def held_lock(tmp_path):
    """A second process that holds the warehouse file open for writing until told to stop."""
    database = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(database)!r}); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    yield database, holder
    holder.kill()
    holder.wait()


def test_a_held_lock_fails_after_the_timeout_with_the_file_and_holder_named(held_lock):
    database, holder = held_lock
    started = time.monotonic()
    with pytest.raises(TimeoutError) as error:
        with Warehouse(database=str(database), lock_timeout_s=0.5).connect(read_only=True):
            pass
    assert 0.5 <= time.monotonic() - started < 5
    assert str(database) in str(error.value) and f"PID {holder.pid}" in str(error.value)


def test_a_lock_released_while_waiting_is_taken(held_lock):
    database, holder = held_lock
    threading.Timer(1.0, holder.stdin.close).start()  # the holder exits a second from now
    with Warehouse(database=str(database)).connect() as con:  # the default wait (120 s)
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    with Warehouse(database=str(database)).connect(read_only=True) as con:
        assert con.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_no_wait_fails_at_once(held_lock):
    database, _ = held_lock
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        with Warehouse(database=str(database)).connect(lock_timeout_s=0):
            pass
    assert time.monotonic() - started < 1
