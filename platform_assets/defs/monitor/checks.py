"""Checks on monitoring: every logged line accounted for, served features as training saw them, drift, quality."""


import dagster as dg

from platform_assets.declarations import UseCase
from platform_assets.keys import for_use_case

from platform_assets.defs.ingest.partitions import run_partition_keys
from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter
from platform_assets.defs.monitor.assets import TRAFFIC
from platform_assets.resources import FeatureStore, PlatformState, Warehouse


def _rows_by_day(con, table: str, where: str, params: list) -> dict[str, int]:
    """Day -> rows of ``table`` for the days ``where`` selects."""
    return dict(con.execute(
        f"SELECT {PARTITION_COLUMN}, count(*) FROM {table} WHERE {where} GROUP BY 1", params).fetchall())


def _unaccounted_days(days: list[str], held: dict[str, int], rejected: dict[str, int], recount, what: str) -> dict[str, str]:
    """Day -> how the ``recount(day)`` of its files differs from the rows held plus rejected (agreeing days left out)."""
    differing = {}
    for day in days:
        counted, accounted = recount(day), held.get(day, 0) + rejected.get(day, 0)
        if counted != accounted:
            differing[day] = f"{counted} {what} in the files, {accounted} rows held + rejected"
    return differing


def _latest_report(context, drift_report: dg.AssetKey) -> dict:
    """The drift report's latest materialization metadata, as plain values."""
    event = context.instance.get_latest_materialization_event(drift_report)
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


class DriftThresholdConfig(dg.Config):
    """The share of drifted model inputs above which the check warns."""

    max_drift_share: float = 0.3


class QualityBoundConfig(dg.Config):
    """How far live quality may fall below the model's offline test figures."""

    max_auc_drop: float = 0.05
    max_brier: float = 0.25


def build_monitor_checks(use_case: UseCase) -> list[dg.AssetChecksDefinition]:
    """The checks of the use case's monitoring assets."""
    keys, source, schema = for_use_case(use_case), use_case.source, use_case.monitor_schema

    @dg.asset_check(
        asset=keys.inference_log,
        blocking=True,
        description="Lines in the server's log files (recounted now) = rows ingested + lines rejected; ids unique.",
    )
    def inference_log_lines_accounted_for(
        context: dg.AssetCheckExecutionContext, state: PlatformState, warehouse: Warehouse
    ) -> dg.AssetCheckResult:
        """Recounts each day's lines from the files' bytes and compares with what the warehouse holds."""
        from platform_assets.monitor import logs

        partition_keys = run_partition_keys(context)
        where, params = partition_filter(partition_keys)
        with warehouse.connect(read_only=True) as con:
            held, rejected = (_rows_by_day(con, f"{schema}.{t}", where, params)
                              for t in ("inference_log", "inference_log_rejects"))
            duplicates = con.execute(
                f"SELECT count(*) FROM (SELECT request_id, row FROM {schema}.inference_log WHERE {where} "
                "GROUP BY 1, 2 HAVING count(*) > 1)", params).fetchone()[0]
            ingested = [r[0] for r in con.execute(
                f"SELECT DISTINCT {PARTITION_COLUMN} FROM {schema}.inference_log_files WHERE {where} ORDER BY 1", params
            ).fetchall()]
        # The run's days; in a run of the check alone (no partition), every day ingested so far.
        days = partition_keys if partition_keys is not None else ingested
        folder = state.paths.of(use_case.name).inference
        differing = _unaccounted_days(days, held, rejected, lambda day: logs.recount_day(folder, day)[1], "lines")
        return dg.AssetCheckResult(
            passed=not differing and duplicates == 0,
            metadata={"days": len(days), "rows": sum(held.values()), "rejected": sum(rejected.values()),
                      "duplicate_request_rows": int(duplicates),
                      "differing_days": dg.MetadataValue.json(differing)},
        )


    @dg.asset_check(
        asset=keys.outcomes,
        blocking=True,
        description="Data rows of the day's outcome file (recounted from its bytes) = outcomes held + rows rejected.",
    )
    def outcome_rows_accounted_for(
        context: dg.AssetCheckExecutionContext, state: PlatformState, warehouse: Warehouse
    ) -> dg.AssetCheckResult:
        """Recounts each day's file rows and compares with ``monitor_<use case>.outcomes`` and ``.outcome_rejects``."""
        from platform_assets.monitor import outcomes

        partition_keys = run_partition_keys(context)
        where, params = partition_filter(partition_keys)
        with warehouse.connect(read_only=True) as con:
            held, rejected = (_rows_by_day(con, f"{schema}.{t}", where, params)
                              for t in ("outcomes", "outcome_rejects"))
            days = partition_keys if partition_keys is not None else [r[0] for r in con.execute(
                f"SELECT DISTINCT {PARTITION_COLUMN} FROM {schema}.outcome_files WHERE {where} ORDER BY 1", params).fetchall()]
            duplicates = con.execute(f"SELECT count(*) FROM (SELECT {source.key} FROM {schema}.outcomes "
                                     "GROUP BY 1 HAVING count(*) > 1)").fetchone()[0]
        folder = state.paths.of(use_case.name).outcomes
        differing = _unaccounted_days(
            days, held, rejected,
            lambda day: sum(outcomes.count_rows(p.read_bytes()) for p in outcomes.day_files(folder, day)), "data rows")
        return dg.AssetCheckResult(
            passed=not differing and duplicates == 0,
            metadata={"days": len(days), "outcomes": sum(held.values()), "rejected": sum(rejected.values()),
                      "keys_with_two_outcomes": int(duplicates), "differing_days": dg.MetadataValue.json(differing)},
        )


    @dg.asset_check(
        asset=keys.inference_log,
        description=(
            "Served features equal the point-in-time features training uses for the same row (no skew): "
            "compared for every logged request whose row has since landed."
        ),
    )
    def served_features_match_point_in_time(
        context: dg.AssetCheckExecutionContext, state: PlatformState, warehouse: Warehouse, feast: FeatureStore
    ) -> dg.AssetCheckResult:
        """Retrieves the point-in-time features of each logged request's row (once it landed) and compares each one."""
        from platform_assets.features import feast_ops
        from platform_assets.monitor.skew import feature_mismatches
        from platform_assets.warehouse import table_names

        key = source.key
        where, params = partition_filter(run_partition_keys(context))
        with warehouse.connect(read_only=True) as con:
            if source.validated_table not in table_names(con):
                return dg.AssetCheckResult(passed=True, metadata={"compared": 0, "note": "no validated rows yet"})
            served = con.execute(
                f"SELECT * FROM {schema}.inference_log WHERE {TRAFFIC} AND {key} IS NOT NULL AND {where}",
                params).df()
            entities = con.execute(
                f"SELECT {', '.join(dict.fromkeys(use_case.entity_keys))}, {source.event_time} AS event_timestamp "
                f"FROM {source.validated_table} WHERE CAST({key} AS VARCHAR) IN "
                f"(SELECT CAST({key} AS VARCHAR) FROM {schema}.inference_log WHERE {TRAFFIC} AND {where})", params).df()
        # Only rows the feature store already holds can be compared: a day validated but not yet built by
        # dbt and exported (automation runs that after the log) counts as not yet landed.
        exported = [p for p in (state.paths.feast / "data" / f"{mart}.parquet" for mart in use_case.marts)
                    if p.exists()]
        newest = None
        if exported:
            import duckdb

            with duckdb.connect() as local:
                newest = local.execute(f"SELECT max(event_timestamp) FROM read_parquet({[str(p) for p in exported]})"
                                       ).fetchone()[0]
        entities = entities[entities["event_timestamp"] <= newest] if newest is not None else entities.iloc[:0]
        offline = feast_ops.historical_features(feast.store(), entities, use_case) if len(entities) else entities
        served[key], offline[key] = served[key].astype(str), offline[key].astype(str)
        features = [c for c in offline.columns if c in served.columns and c not in use_case.entity_keys
                    and not c.startswith("_") and c not in ("event_timestamp",)]
        mismatches = feature_mismatches(served, offline, features, key)
        compared = int(served[key].isin(offline[key]).sum()) if len(served) else 0
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


    @dg.asset_check(asset=keys.drift_report, description="The share of drifted model inputs is under the threshold (warns).")
    def drift_share_under_threshold(
        context: dg.AssetCheckExecutionContext, config: DriftThresholdConfig
    ) -> dg.AssetCheckResult:
        """Warns (does not block) when too many inputs drifted: a signal to retrain."""
        report = _latest_report(context, keys.drift_report)
        share = report.get("drift_share")
        return dg.AssetCheckResult(
            passed=share is None or share <= config.max_drift_share,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"drift_share": share, "drifted": report.get("drifted", "none"),
                      "prediction_drifted": report.get("prediction_drifted")},
        )


    @dg.asset_check(
        asset=keys.drift_report,
        blocking=True,
        description="ROC AUC on labelled traffic within max_auc_drop of the model's test AUC, Brier under its bound.",
    )
    def quality_above_bound(context: dg.AssetCheckExecutionContext, config: QualityBoundConfig) -> dg.AssetCheckResult:
        """Fails when the served model's quality on traffic with known outcomes fell below the bound.

        With too few labelled rows to judge (``roc_auc`` is null) it passes and says so:
        outcomes arrive days after the traffic, and a model just deployed has none yet.
        """
        report = _latest_report(context, keys.drift_report)
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

    checks = [inference_log_lines_accounted_for, served_features_match_point_in_time, drift_share_under_threshold,
              quality_above_bound]
    return [*checks, outcome_rows_accounted_for] if source.label_time else checks
