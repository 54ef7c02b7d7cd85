"""Data drift with Evidently: recent inputs against the training reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass
class DriftSummary:
    """What the drift report found, as Evidently decided it."""

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
    # With tests, Evidently records its own per-column decision (each ValueDrift's "drift" test).
    snapshot = Report([DataDriftPreset()], include_tests=True).run(cur, ref)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    found = evidently_drift(snapshot.dict())
    missing = sorted(set(columns) - set(found["detected"]))
    if missing:
        raise ValueError(f"Evidently's report has no drift result for columns {missing}")
    return DriftSummary(len(columns), found["count"], found["share"], found["drifted"], len(ref), len(cur),
                        found["scores"], found["methods"])


def evidently_drift(result: dict) -> dict:
    """The drift results of a DataDriftPreset report with tests (``snapshot.dict()``), as Evidently decided them.

    Each column's ``ValueDrift`` metric gives its score, method and threshold, and its
    ``drift`` test the decision (``FAIL``: drift detected); ``DriftedColumnsCount``
    gives the count and share of drifted columns. Nothing is re-derived here.

    Returns:
        ``count`` and ``share`` (``DriftedColumnsCount``), ``detected`` (column ->
        drifted), ``drifted`` (the drifted columns, sorted), ``scores`` and ``methods``.

    Raises:
        ValueError: If a part is missing (a report without tests), or Evidently's count
            is not the number of columns whose drift test failed.
    """
    count, share, scores, methods, metric_column = None, None, {}, {}, {}
    for metric in result["metrics"]:
        config, value = metric["config"], metric["value"]
        if config["type"].endswith(":DriftedColumnsCount"):
            count, share = int(value["count"]), float(value["share"])
        elif config["type"].endswith(":ValueDrift"):
            scores[config["column"]], methods[config["column"]] = float(value), config["method"]
            metric_column[metric["id"]] = config["column"]
    if count is None:
        raise ValueError("Evidently's report has no DriftedColumnsCount metric")
    detected = {}
    for test in result.get("tests", []):
        column = metric_column.get(test.get("metric_config", {}).get("metric_id"))
        if column is not None and test.get("id") == "drift":
            detected[column] = test["status"] == "FAIL"
    if set(detected) != set(scores):
        raise ValueError(f"Evidently's report has no drift test for columns {sorted(set(scores) - set(detected))} "
                         "(run the Report with include_tests=True)")
    drifted = sorted(c for c, d in detected.items() if d)
    if len(drifted) != count:
        raise ValueError(f"Evidently counts {count} drifted columns but its column tests fail for {drifted}")
    return {"count": count, "share": share, "detected": detected, "drifted": drifted, "scores": scores,
            "methods": methods}


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
        labelled rows or with a single class: too few to judge), with ``base_rate`` (the share
        of positive outcomes) and ``base_rate_brier``, the Brier score of always predicting it.
    """
    from platform_assets.evaluate.metrics import score

    rows = len(labelled)
    if rows < min_rows or labelled["outcome"].nunique() < 2:
        return {"labelled_rows": rows, "roc_auc": None, "brier": None, "base_rate": None, "base_rate_brier": None}
    scored = score(labelled["outcome"].to_numpy(), labelled["probability"].to_numpy())
    base_rate = float(labelled["outcome"].mean())
    # The Brier score of always answering the window's base rate: a model that scores worse knows nothing.
    return {"labelled_rows": rows, "roc_auc": scored["roc_auc"], "brier": scored["brier"],
            "base_rate": base_rate, "base_rate_brier": base_rate * (1.0 - base_rate)}


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
        if len(rows) >= min_rows and rows["outcome"].nunique() == 2:
            auc = round(float(score(rows["outcome"].to_numpy(), rows["probability"].to_numpy())["roc_auc"]), 4)
        out[str(day)] = {"rows": int(len(rows)), "roc_auc": auc}
    return out


def figures(summary: DriftSummary | None, features: list[str], quality_found: dict, reference_auc: float | None) -> dict:
    """The report's summary numbers (materialization metadata the UI plots over time).

    ``drift_share`` counts the model inputs only: of Evidently's drifted columns
    (``summary.drifted``), those among ``features``, over their number, as Evidently's
    ``DriftedColumnsCount`` counts them. The prediction (the ``probability`` column) is
    reported as ``prediction_drift_score`` / ``prediction_drifted``.
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


def drift_table(summary: DriftSummary, features: list[str]) -> str:
    """Each compared column's drift as Evidently judged it, as a Markdown table (the asset page shows it): the
    method, the score and whether the column drifted; the model inputs first, then the prediction."""
    methods, scores = summary.methods or {}, summary.scores or {}
    columns = [c for c in features if c in scores] + [c for c in scores if c not in features]
    lines = ["| column | method | score | drifted |", "|---|---|---|---|"]
    lines += [f"| {c} | {methods.get(c, '')} | {scores[c]:.4f} | {'yes' if c in summary.drifted else 'no'} |"
              for c in columns]
    return "\n".join(lines)


def not_written(current_rows: int, min_current_rows: int, window_days: int) -> str:
    """Why no drift report was written, and what to do: said in the run's metadata and log."""
    return (f"not written: {current_rows} rows of traffic in the {window_days}-day window, fewer than "
            f"min_current_rows={min_current_rows}; wait for more traffic, or lower min_current_rows or widen "
            "window_days in the drift_report's run config (DriftConfig)")
