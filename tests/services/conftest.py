"""The prod profile on this machine's PostgreSQL and Redis: every test here is marked ``services`` and skips,
naming what did not answer, when they are not there.

Each module gets its own databases (Dagster, MLflow, Feast's registry, the warehouse's DuckLake catalog) and
its own Redis database, dropped and flushed at the end; the shared store and PLATFORM_HOME are temporary folders.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, TEST_PII_KEY

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# Redis database of the tests (the default 0 is left to whoever uses this Redis).
REDIS_DB = 11
DATABASES = ("dagster", "mlflow", "feast", "lake")
USE_CASE = "loan_default"
DAYS, ROWS_PER_DAY = 24, 250


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/services/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.services)


def services_missing() -> str | None:
    """Why the services cannot be used here, or ``None`` when PostgreSQL and Redis both answer."""
    try:
        import psycopg

        with psycopg.connect(f"{POSTGRES}/test", connect_timeout=3) as con:
            con.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means: not here
        return f"PostgreSQL does not answer at {POSTGRES}/test ({type(exc).__name__}: {exc})"
    try:
        import redis

        redis.Redis(REDIS_HOST, REDIS_PORT, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        return f"Redis does not answer at {REDIS_HOST}:{REDIS_PORT} ({type(exc).__name__}: {exc})"
    return None


def _admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=5) as con:
        con.execute(statement)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """Fresh databases and a flushed Redis database; yields the prod profile's environment for processes."""
    missing = services_missing()
    if missing:
        pytest.skip(f"services tests need PostgreSQL and Redis: {missing}")
    import redis

    prefix = f"platform_test_{uuid.uuid4().hex[:8]}"
    names = {kind: f"{prefix}_{kind}" for kind in DATABASES}
    for name in names.values():
        _admin(f"CREATE DATABASE {name}")
    store = redis.Redis(REDIS_HOST, REDIS_PORT, db=REDIS_DB)
    store.flushdb()
    root = tmp_path_factory.mktemp("prod")
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "dagster" / "dagster.postgres.yaml", dagster_home / "dagster.yaml")
    (root / "home").mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PLATFORM_", "MLFLOW_", "FEAST_", "DAGSTER_"))},
        "PLATFORM_PROFILE": "prod",
        "PLATFORM_HOME": str(root / "home"),
        "PLATFORM_SHARED_STORE": str(root / "shared"),
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_POSTGRES_URL": f"{POSTGRES}/{names['dagster']}",
        "PLATFORM_WAREHOUSE_URL": f"{POSTGRES}/{names['lake']}",
        "MLFLOW_TRACKING_URI": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{names['mlflow']}",
        "FEAST_REGISTRY_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{names['feast']}",
        "FEAST_REDIS_CONNECTION_STRING": f"{REDIS_HOST}:{REDIS_PORT},db={REDIS_DB}",
        "PII_HMAC_KEY": TEST_PII_KEY,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    try:
        yield {"env": env, "root": root, "databases": names, "redis": store}
    finally:
        subprocess.run([sys.executable, "-m", "platform_assets", "stop-serving"], cwd=PROJECT_ROOT, env=env,
                       capture_output=True, timeout=120)
        store.flushdb()
        for name in names.values():
            _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(env: dict, *args: str, timeout: int = 600) -> str:
    done = subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def query(database: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/{database}", connect_timeout=5) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def graph(services):
    """Generated landing days, then ingest, everything up to serving, traffic, its log and the drift report."""
    from platform_assets.deploy.serving import free_port

    env = {**services["env"], "SERVING_PORT": str(free_port())}
    start = dt.date.today() - dt.timedelta(days=DAYS)
    last = (start + dt.timedelta(days=DAYS - 1)).isoformat()
    env["PLATFORM_PARTITIONS_START"] = start.isoformat()
    run(env, "-m", "platform_assets", "generate", "--use-case", USE_CASE, "--days", str(DAYS),
         "--rows-per-day", str(ROWS_PER_DAY), "--start", start.isoformat())
    launch = ("-m", "platform_assets.launch", "--job")
    run(env, *launch, f"{USE_CASE}__ingest_days", "--partition-range", f"{start.isoformat()}...{last}")
    run(env, *launch, f"{USE_CASE}__features_to_serving", timeout=900)
    traffic = run(env, "-m", "platform_assets", "traffic", "--use-case", USE_CASE)
    run(env, *launch, f"{USE_CASE}__inference_days", "--partition", last)
    run(env, *launch, f"{USE_CASE}__drift")
    return {**services, "env": env, "last": last, "traffic": traffic}
