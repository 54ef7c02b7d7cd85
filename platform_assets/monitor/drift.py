"""Data drift with Evidently: recent inputs against the training reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass
class DriftSummary:
    """What the drift report found."""

    columns: int
    drifted_columns: int
    drift_share: float
    drifted: list[str]
    reference_rows: int
    current_rows: int
    # Column -> Evidently's drift score (a p-value or a distance, see ``methods``).
    scores: dict = None
    methods: dict = None


def _sample(df: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    # Evidently's cost grows with rows (about 4.6 s at 100k, 63 s at 1M for 10 columns).
    return df.sample(n=max_rows, random_state=seed) if len(df) > max_rows else df


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    html_path: Path,
    max_rows: int = 20_000,
    seed: int = 0,
) -> DriftSummary:
    """Runs Evidently's DataDriftPreset, writes the HTML report and summarises it.

    Args:
        reference: The data the model was trained on.
        current: Recent inputs.
        columns: Feature columns to compare.
        html_path: Where the HTML report is written.
        max_rows: Each side is sampled down to this many rows.
        seed: Sampling seed.

    Returns:
        The number and share of drifted columns and their names.
    """
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref = _sample(reference[columns], max_rows, seed).reset_index(drop=True)
    cur = _sample(current[columns], max_rows, seed).reset_index(drop=True)
    snapshot = Report([DataDriftPreset()]).run(cur, ref)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    result = snapshot.dict()
    drifted_count, share, drifted, scores, methods = None, None, [], {}, {}
    for metric in result["metrics"]:
        config, value = metric["config"], metric["value"]
        if config["type"].endswith("DriftedColumnsCount"):
            drifted_count, share = int(value["count"]), float(value["share"])
        elif config["type"].endswith("ValueDrift"):
            scores[config["column"]], methods[config["column"]] = float(value), config["method"]
            if _is_drift(config["method"], value, config["threshold"]):
                drifted.append(config["column"])
    if drifted_count is None:
        raise ValueError("Evidently's report has no DriftedColumnsCount metric")
    return DriftSummary(len(columns), drifted_count, share, sorted(drifted), len(ref), len(cur), scores, methods)


def _is_drift(method: str, value: float, threshold: float) -> bool:
    """Statistical tests report p-values (drift below the threshold), distances drift above it."""
    return value < threshold if "p_value" in method else value >= threshold


def reference_window(training: pd.DataFrame, days: int) -> pd.DataFrame:
    """The newest ``days`` days of the training set (every split): what the model saw last.

    The newest days, rather than the oldest (the train split), keep slow seasonal
    movement out of the comparison: served traffic follows right after them.
    """
    newest = training["event_timestamp"].max()
    return training[training["event_timestamp"] > newest - pd.Timedelta(days=days)]


def quality(labelled: pd.DataFrame, min_rows: int) -> dict:
    """ROC AUC and Brier score of served probabilities against the known outcomes.

    Returns:
        ``labelled_rows``, and ``roc_auc`` / ``brier`` (``None`` under ``min_rows``
        labelled rows or with a single class: too few to judge).
    """
    from platform_assets.evaluate.metrics import score

    rows = len(labelled)
    if rows < min_rows or labelled["is_default"].nunique() < 2:
        return {"labelled_rows": rows, "roc_auc": None, "brier": None}
    scored = score(labelled["is_default"].to_numpy(), labelled["probability"].to_numpy())
    return {"labelled_rows": rows, "roc_auc": scored["roc_auc"], "brier": scored["brier"]}


def daily_quality(labelled: pd.DataFrame, min_rows: int) -> dict[str, dict]:
    """ROC AUC of served probabilities per event day (``_partition``), for locating when quality fell.

    Returns:
        Day -> ``{"rows": n, "roc_auc": auc}``; ``roc_auc`` is ``None`` for a day
        under ``min_rows`` labelled rows or with a single class.
    """
    from platform_assets.evaluate.metrics import score

    out = {}
    for day, rows in labelled.groupby("_partition", sort=True):
        auc = None
        if len(rows) >= min_rows and rows["is_default"].nunique() == 2:
            auc = round(float(score(rows["is_default"].to_numpy(), rows["probability"].to_numpy())["roc_auc"]), 4)
        out[str(day)] = {"rows": int(len(rows)), "roc_auc": auc}
    return out


def figures(summary: DriftSummary | None, features: list[str], quality_found: dict, reference_auc: float | None) -> dict:
    """The report's summary numbers (materialization metadata the UI plots over time).

    ``drift_share`` counts the model inputs only; the prediction (the ``probability``
    column) is reported as ``prediction_drift_score`` / ``prediction_drifted``.
    """
    out: dict = {"columns": len(features), **quality_found, "reference_roc_auc": reference_auc}
    auc = quality_found.get("roc_auc")
    out["auc_drop"] = float(reference_auc - auc) if auc is not None and reference_auc is not None else None
    if summary is None:
        out.update(drifted_columns=None, drift_share=None, drifted="not enough traffic",
                   prediction_drift_score=None, prediction_drifted=None)
        return out
    drifted = [c for c in summary.drifted if c in features]
    out.update(
        drifted_columns=len(drifted),
        drift_share=len(drifted) / len(features) if features else 0.0,
        drifted=", ".join(drifted) or "none",
        prediction_drift_score=summary.scores.get("probability"),
        prediction_drifted="probability" in summary.drifted,
    )
    return out
