"""What a stage costs: wall seconds, CPU seconds and the peak memory of its process tree.

Every asset body is wrapped by :func:`with_cost`, which adds to each materialization

- ``cost/wall_s``: seconds from the start of the body to this materialization;
- ``cost/cpu_s``: CPU seconds (user and system) of the step's process and of the child processes it waited for
  (dbt, for instance) over the same time;
- ``cost/peak_rss_mb``: the largest resident memory of the process plus the children it started meanwhile,
  sampled every :data:`SAMPLE_INTERVAL_S` and at the end (children that were running before the body
  started, such as model servers of an earlier step, are not counted).

An asset that yields several materializations (dbt's models, the validated rows and their quarantine) records
the step's cost up to each one: the last is the whole step. Being numbers, they are plotted over time in the
asset's Plots tab.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import resource
import threading
import time
from dataclasses import dataclass

SAMPLE_INTERVAL_S = 0.2
COST_KEYS = ("cost/wall_s", "cost/cpu_s", "cost/peak_rss_mb")
_active: contextvars.ContextVar[CostMeter | None] = contextvars.ContextVar("platform_cost_meter", default=None)


@dataclass(frozen=True)
class Cost:
    """What a stage spent: wall seconds, CPU seconds, the peak resident memory in bytes."""

    wall_s: float
    cpu_s: float
    peak_rss_bytes: int

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_bytes / 2**20

    def metadata(self) -> dict:
        """The cost as Dagster metadata (floats, so that the Plots tab draws them)."""
        import dagster as dg

        return {"cost/wall_s": dg.MetadataValue.float(round(self.wall_s, 3)),
                "cost/cpu_s": dg.MetadataValue.float(round(self.cpu_s, 3)),
                "cost/peak_rss_mb": dg.MetadataValue.float(round(self.peak_rss_mb, 1))}

    def summary(self) -> str:
        return f"{self.wall_s:.1f} s wall, {self.cpu_s:.1f} s CPU, peak {self.peak_rss_mb:.0f} MB"


def _cpu_s() -> float:
    own, waited = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + waited.ru_utime + waited.ru_stime


class CostMeter:
    """Measures a stage from ``__enter__``: :meth:`so_far` at any time, :attr:`cost` once it has ended."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S):
        self.interval_s = interval_s
        self.cost: Cost | None = None
        self._peak = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def __enter__(self) -> CostMeter:
        import psutil

        self._token = _active.set(self)
        self._process = psutil.Process(os.getpid())
        self._earlier = {p.pid for p in self._process.children(recursive=True)}
        self._start_wall, self._start_cpu = time.perf_counter(), _cpu_s()
        self._sample()
        self._sampler = threading.Thread(target=self._sample_until_stopped, name="cost-meter", daemon=True)
        self._sampler.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._sampler.join()
        self.cost = self.so_far()
        _active.reset(self._token)

    def _sample(self) -> None:
        import psutil

        total = 0
        try:
            processes = [self._process, *(p for p in self._process.children(recursive=True)
                                          if p.pid not in self._earlier)]
        except psutil.Error:
            processes = [self._process]
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:  # it ended between the listing and the reading
                continue
        with self._lock:
            self._peak = max(self._peak, total)

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def so_far(self) -> Cost:
        """The cost from the start until now."""
        self._sample()
        with self._lock:
            peak = self._peak
        return Cost(time.perf_counter() - self._start_wall, _cpu_s() - self._start_cpu, peak)


def so_far() -> Cost | None:
    """The cost of the asset body running now, up to this moment (``None`` outside :func:`with_cost`).

    For what the body itself reports before it returns: the model asset logs it to its MLflow run.
    """
    meter = _active.get()
    return meter.so_far() if meter else None


def _with_cost_metadata(event, cost: Cost):
    """``event`` with the cost added to its metadata, for the events that record a materialization."""
    import dagster as dg

    if isinstance(event, dg.MaterializeResult):
        return event._replace(metadata={**(event.metadata or {}), **cost.metadata()})
    if isinstance(event, (dg.Output, dg.AssetMaterialization)):
        return event.with_metadata({**(event.metadata or {}), **cost.metadata()})
    return event


def with_cost(body):
    """Wraps an asset body so that every materialization it returns or yields records its cost.

    The wrapper keeps the body's signature (Dagster reads its context, config and resources from it).
    """
    if inspect.isgeneratorfunction(body):

        @functools.wraps(body)
        def measured_generator(*args, **kwargs):
            with CostMeter() as meter:
                for event in body(*args, **kwargs):
                    yield _with_cost_metadata(event, meter.so_far())

        return measured_generator

    @functools.wraps(body)
    def measured(*args, **kwargs):
        with CostMeter() as meter:
            result = body(*args, **kwargs)
        return _with_cost_metadata(result, meter.cost)

    return measured


def costs_by_step(instance, run_id: str) -> dict[str, Cost]:
    """Each step's cost in a finished run, from the cost metadata of its materializations (the last of a step)."""
    import dagster as dg

    by_step: dict[str, Cost] = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        event = record.dagster_event
        metadata = event.event_specific_data.materialization.metadata
        if not all(key in metadata for key in COST_KEYS):
            continue
        spent = Cost(metadata["cost/wall_s"].value, metadata["cost/cpu_s"].value,
                     int(metadata["cost/peak_rss_mb"].value * 2**20))
        if event.step_key not in by_step or spent.wall_s >= by_step[event.step_key].wall_s:
            by_step[event.step_key] = spent
    return by_step


def total(costs: dict[str, Cost]) -> Cost:
    """The steps' wall and CPU seconds added up, and the largest peak among them."""
    return Cost(sum(c.wall_s for c in costs.values()), sum(c.cpu_s for c in costs.values()),
                max((c.peak_rss_bytes for c in costs.values()), default=0))
