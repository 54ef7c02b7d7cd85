"""Checks on monitoring: every logged line accounted for, served features as training saw them, drift, quality."""


import dagster as dg

from platform_assets.ingest.assets import SOURCE

from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter, run_partition_keys
from platform_assets.monitor.assets import DRIFT_REPORT, INFERENCE_LOG, OUTCOMES, TRAFFIC
from platform_assets.resources import PlatformState, Warehouse


def _rows_by_day(con, table: str, where: str, params: list) -> dict[str, int]:
    """Day -> rows of ``monitor.<table>`` for the days ``where`` selects."""
    return dict(con.execute(
        f"SELECT {PARTITION_COLUMN}, count(*) FROM monitor.{table} WHERE {where} GROUP BY 1", params).fetchall())


@dg.asset_check(
    asset=INFERENCE_LOG,
    blocking=True,
    description="Lines in the server's log files (recounted now) = rows ingested + lines rejected; ids unique.",
)
def inference_log_lines_accounted_for(
    context: dg.AssetCheckExecutionContext, state: PlatformState, warehouse: Warehouse
) -> dg.AssetCheckResult:
    """Recounts each day's lines from the files' bytes and compares with what the warehouse holds."""
    from platform_assets.monitor import logs

    keys = run_partition_keys(context)
    where, params = partition_filter(keys)
    with warehouse.connect(read_only=True) as con:
        held, rejected = (_rows_by_day(con, t, where, params) for t in ("inference_log", "inference_log_rejects"))
        duplicates = con.execute(
            f"SELECT count(*) FROM (SELECT request_id, row FROM monitor.inference_log WHERE {where} "
            "GROUP BY 1, 2 HAVING count(*) > 1)", params).fetchone()[0]
        ingested = [r[0] for r in con.execute(
            f"SELECT DISTINCT {PARTITION_COLUMN} FROM monitor.inference_log_files WHERE {where} ORDER BY 1", params
        ).fetchall()]
    # The run's days; in a run of the check alone (no partition), every day ingested so far.
    days = keys if keys is not None else ingested
    differing = {}
    for day in days:
        _, lines = logs.recount_day(state.paths.inference, day)
        accounted = held.get(day, 0) + rejected.get(day, 0)
        if lines != accounted:
            differing[day] = f"{lines} lines in files, {accounted} rows + rejected"
    return dg.AssetCheckResult(
        passed=not differing and duplicates == 0,
        metadata={"days": len(days), "rows": sum(held.values()), "rejected": sum(rejected.values()),
                  "duplicate_request_rows": int(duplicates),
                  "differing_days": dg.MetadataValue.json(differing)},
    )


@dg.asset_check(
    asset=OUTCOMES,
    blocking=True,
    description="Data rows of the day's outcome file (recounted from its bytes) = outcomes held + rows rejected.",
)
def outcome_rows_accounted_for(
    context: dg.AssetCheckExecutionContext, state: PlatformState, warehouse: Warehouse
) -> dg.AssetCheckResult:
    """Recounts each day's file rows and compares with ``monitor.outcomes`` and ``monitor.outcome_rejects``."""
    from platform_assets.monitor import outcomes

    keys = run_partition_keys(context)
    where, params = partition_filter(keys)
    with warehouse.connect(read_only=True) as con:
        held, rejected = (_rows_by_day(con, t, where, params) for t in ("outcomes", "outcome_rejects"))
        days = keys if keys is not None else [r[0] for r in con.execute(
            f"SELECT DISTINCT {PARTITION_COLUMN} FROM monitor.outcome_files WHERE {where} ORDER BY 1", params).fetchall()]
        duplicates = con.execute(f"SELECT count(*) FROM (SELECT {SOURCE.key} FROM monitor.outcomes "
                                 "GROUP BY 1 HAVING count(*) > 1)").fetchone()[0]
    differing = {}
    for day in days:
        rows = sum(outcomes.count_rows(p.read_bytes()) for p in outcomes.day_files(state.paths.outcomes, day))
        accounted = held.get(day, 0) + rejected.get(day, 0)
        if rows != accounted:
            differing[day] = f"{rows} rows in the file, {accounted} outcomes + rejected"
    return dg.AssetCheckResult(
        passed=not differing and duplicates == 0,
        metadata={"days": len(days), "outcomes": sum(held.values()), "rejected": sum(rejected.values()),
                  "applications_with_two_outcomes": int(duplicates), "differing_days": dg.MetadataValue.json(differing)},
    )


@dg.asset_check(
    asset=INFERENCE_LOG,
    description=(
        "Served features equal the point-in-time features training uses for the same application (no skew): "
        "compared for every logged request whose application has since landed."
    ),
)
def served_features_match_point_in_time(
    context: dg.AssetCheckExecutionContext, warehouse: Warehouse
) -> dg.AssetCheckResult:
    """Joins logged traffic with the dbt marts on application id and compares each feature."""
    from platform_assets.features.history import HISTORY_FEATURES
    from platform_assets.monitor.skew import feature_mismatches
    from platform_assets.warehouse import table_names

    where, params = partition_filter(run_partition_keys(context))
    with warehouse.connect(read_only=True) as con:
        if not {"features.fct_application_features", "features.fct_applicant_history"} <= table_names(con):
            return dg.AssetCheckResult(passed=True, metadata={"compared": 0, "note": "no feature marts yet"})
        served = con.execute(
            f"SELECT * FROM monitor.inference_log WHERE {TRAFFIC} AND application_id IS NOT NULL AND {where}",
            params).df()
        offline = con.execute(
            f"SELECT a.*, {', '.join('h.' + n for n in HISTORY_FEATURES)} FROM features.fct_application_features a "
            "JOIN features.fct_applicant_history h USING (application_id) WHERE a.application_id IN "
            f"(SELECT application_id FROM monitor.inference_log WHERE {TRAFFIC} AND {where})", params).df()
    features = [c for c in offline.columns if c in served.columns and c not in ("application_id", "applicant_id")
                and not c.startswith("_") and c not in ("event_timestamp",)]
    mismatches = feature_mismatches(served, offline, features)
    compared = int(served["application_id"].isin(offline["application_id"]).sum()) if len(served) else 0
    return dg.AssetCheckResult(
        passed=mismatches.empty,
        metadata={
            "requests_compared": compared,
            "requests_not_yet_landed": int(len(served) - compared),
            "mismatching_requests": int(mismatches["request_id"].nunique()) if len(mismatches) else 0,
            "features": ", ".join(sorted(mismatches["feature"].unique())) if len(mismatches) else "none",
            "examples": dg.MetadataValue.md(mismatches.head(10).to_markdown(index=False) if len(mismatches) else "none"),
        },
    )


def _latest_report(context) -> dict:
    """The drift report's latest materialization metadata, as plain values."""
    event = context.instance.get_latest_materialization_event(DRIFT_REPORT)
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


class DriftThresholdConfig(dg.Config):
    """The share of drifted model inputs above which the check warns."""

    max_drift_share: float = 0.3


@dg.asset_check(asset=DRIFT_REPORT, description="The share of drifted model inputs is under the threshold (warns).")
def drift_share_under_threshold(
    context: dg.AssetCheckExecutionContext, config: DriftThresholdConfig
) -> dg.AssetCheckResult:
    """Warns (does not block) when too many inputs drifted: a signal to retrain."""
    report = _latest_report(context)
    share = report.get("drift_share")
    return dg.AssetCheckResult(
        passed=share is None or share <= config.max_drift_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"drift_share": share, "drifted": report.get("drifted", "none"),
                  "prediction_drifted": report.get("prediction_drifted")},
    )


class QualityBoundConfig(dg.Config):
    """How far live quality may fall below the model's offline test figures."""

    max_auc_drop: float = 0.05
    max_brier: float = 0.25


@dg.asset_check(
    asset=DRIFT_REPORT,
    blocking=True,
    description="ROC AUC on labelled traffic within max_auc_drop of the model's test AUC, Brier under its bound.",
)
def quality_above_bound(context: dg.AssetCheckExecutionContext, config: QualityBoundConfig) -> dg.AssetCheckResult:
    """Fails when the served model's quality on traffic with known outcomes fell below the bound.

    With too few labelled rows to judge (``roc_auc`` is null) it passes and says so:
    outcomes arrive days after the traffic, and a model just deployed has none yet.
    """
    report = _latest_report(context)
    auc, drop, brier = report.get("roc_auc"), report.get("auc_drop"), report.get("brier")
    if auc is None:
        return dg.AssetCheckResult(passed=True, metadata={"labelled_rows": report.get("labelled_rows"),
                                                          "note": "too few labelled rows to judge"})
    passed = (drop is None or drop <= config.max_auc_drop) and brier <= config.max_brier
    return dg.AssetCheckResult(
        passed=passed,
        metadata={"roc_auc": auc, "reference_roc_auc": report.get("reference_roc_auc"), "auc_drop": drop,
                  "brier": brier, "labelled_rows": report.get("labelled_rows")},
    )
