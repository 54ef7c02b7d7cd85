"""When a drift report asks for a retrain: plain functions, no Dagster.

The drift sensor reads a report's figures and its own cursor, calls
:func:`decide_retrain`, and turns the decision into a run request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class RetrainDecision:
    """What a drift report asks for.

    Attributes:
        request: Whether to request the retrain job now.
        reason: Which signal (or why none, or what it waits for).
        since: Train on rows from this day on: the day live quality fell
            (a concept drift), so that the new model learns the relation as it is
            now, not the one the old days describe. ``None``: all history (input
            drift alone leaves the relation as it was, and more data covers more).
        waiting: A quality signal, but too few labelled rows since it began.
    """

    request: bool
    reason: str
    since: str | None = None
    waiting: bool = False


def quality_onset(daily: dict, below: float) -> str | None:
    """The first day of the newest unbroken run of days whose live ROC AUC is under ``below``.

    Args:
        daily: Day -> ``{"rows", "roc_auc"}`` (the drift report's ``daily_quality``);
            days without an AUC (too few labels) neither start nor break a run.
        below: The AUC under which a day counts as decayed.
    """
    onset = None
    for day, figures in sorted(daily.items(), reverse=True):
        auc = figures.get("roc_auc")
        if auc is None:
            continue
        if auc >= below:
            break
        onset = day
    return onset


def decide_retrain(figures: dict, last: dict | None, drift_share: float, auc_drop: float, cooldown_days: int,
                   min_rows_since: int = 0) -> RetrainDecision:
    """Whether a drift report asks for retraining, on which days, and why.

    Args:
        figures: The report's metadata (``drift_share``, ``auc_drop``, ``prediction_drifted``,
            ``reference_roc_auc``, ``daily_quality``, ``window_end``, ``model_version``).
        last: The report that last requested a retrain (its ``window_end``), or ``None``.
        drift_share: Retrain above this share of drifted inputs.
        auc_drop: Retrain when live ROC AUC fell more than this below the model's test AUC.
        cooldown_days: After a request, no other until the window has moved this many days
            (event time, so that a replayed or simulated history behaves as a live one):
            one drift episode gives one retrain, and the retrained model gets time to be judged.
        min_rows_since: When quality fell from a day on, wait until that many labelled
            rows from that day on are known, and train on those days only.
    """
    signals = []
    share, drop = figures.get("drift_share"), figures.get("auc_drop")
    if share is not None and share > drift_share:
        signals.append(f"{share:.0%} of inputs drifted (> {drift_share:.0%})")
    if drop is not None and drop > auc_drop:
        signals.append(f"live ROC AUC {drop:.3f} below the test AUC (> {auc_drop})")
    if figures.get("prediction_drifted"):
        signals.append("the predictions drifted")
    if not signals:
        return RetrainDecision(False, "no drift or quality signal")
    end = figures.get("window_end")
    if last and last.get("window_end") and end:
        waited = (dt.date.fromisoformat(end) - dt.date.fromisoformat(last["window_end"])).days
        if waited < cooldown_days:
            return RetrainDecision(False, f"cooling down: retrain requested {waited} day(s) ago for {last.get('reason')}")
    reason, since = "; ".join(signals), None
    reference = figures.get("reference_roc_auc")
    daily = figures.get("daily_quality") or {}
    if drop is not None and drop > auc_drop and reference is not None:
        since = quality_onset(daily, reference - auc_drop)
    if since is not None:
        rows = sum(int(v.get("rows", 0)) for d, v in daily.items() if d >= since)
        if rows < min_rows_since:
            return RetrainDecision(False, f"{reason}; quality fell from {since}: waiting for labelled rows since then "
                                          f"({rows} of {min_rows_since})", since, waiting=True)
        reason += f"; training on the days from {since} ({rows} labelled rows)"
    return RetrainDecision(True, reason, since)
