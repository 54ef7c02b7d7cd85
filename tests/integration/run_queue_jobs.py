"""A tiny code location for the run-queue tests: one job whose op holds the warehouse pool for a while."""

import time

import dagster as dg


class HoldConfig(dg.Config):
    """How long the op keeps its run in progress."""

    seconds: float = 1.0


@dg.op(pool="warehouse")
def hold_warehouse(config: HoldConfig) -> None:
    """Sleeps, standing for a step that works on the warehouse."""
    time.sleep(config.seconds)


@dg.job
def warehouse_job():
    """One op in the pool ``warehouse``."""
    hold_warehouse()


defs = dg.Definitions(jobs=[warehouse_job])
