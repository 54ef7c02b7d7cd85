"""How runs share the warehouse: one concurrency pool, and a retry where its lock is met anyway.

DuckDB lets one process write a database file, and a reader in another
process blocks a writer (and the reverse). Every asset that opens the
warehouse, or runs dbt on it, declares the pool ``warehouse``; the instance
(``dagster.yaml``: ``concurrency: pools: granularity: run, default_limit: 1``)
then starts a queued run only while no other run holding that pool is in
progress. Runs that bypass the queue (``dagster asset materialize`` runs in its
own process) and the landing sensor's brief read can still meet the lock:
``Warehouse.connect`` waits for it, and dbt, which opens the file in its own
subprocess, is retried by :data:`DBT_LOCK_RETRY`.
"""

import dagster as dg

WAREHOUSE_POOL = "warehouse"

# dbt fails its whole invocation when the file is locked when it starts; a
# second and third attempt, 10 s then 20 s later (jittered), find it free once
# the other run's step has ended.
DBT_LOCK_RETRY = dg.RetryPolicy(
    max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def ensure_pool_limit(instance: dg.DagsterInstance, pool: str = WAREHOUSE_POOL) -> None:
    """Gives ``pool`` the instance's default limit now, rather than when the queue first meets it.

    dagster 1.13 stores a pool's default limit (``concurrency: pools:
    default_limit``) while it dequeues a run of that pool, after reading the
    limits it enforces: the first queued run of a new pool starts whatever
    else holds the pool. The landing sensor calls this before it asks for
    runs, so its runs queue from the first one.
    """
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits and pool not in storage.get_concurrency_keys():
        storage.initialize_concurrency_limit_to_default(pool)
