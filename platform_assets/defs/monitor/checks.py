"""Checks on monitoring: every logged line accounted for, served features as training saw them, drift, quality."""


import dagster as dg

from platform_assets import config
from platform_assets.declarations import UseCase
from platform_assets.keys import for_use_case

from platform_assets.defs.ingest.partitions import run_partition_keys
from platform_assets.defs.judging import NotJudged, judged_check
from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter
from platform_assets.defs.monitor.assets import TRAFFIC
from platform_assets.resources import FeatureStore, PlatformState, Warehouse
from platform_assets.sql import quoted


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


class SkewSampleConfig(dg.Config):
    """How many served requests per day the skew checks compare, and (after a feature build) how many of the
    newest days with features."""

    requests_per_day: int = 200
    newest_days: int = 2


class DriftThresholdConfig(dg.Config):
    """The share of drifted model inputs above which the check warns."""

    # One home with the drift sensor's retrain threshold.
    max_drift_share: float = config.get_float("PLATFORM_RETRAIN_DRIFT_SHARE")


class QualityBoundConfig(dg.Config):
    """How far live quality may fall below the model's offline test figures, and how its Brier score
    must compare with the window's base-rate predictor (always answering the share of positives)."""

    max_auc_drop: float = config.get_float("PLATFORM_RETRAIN_AUC_DROP")  # one home with the drift sensor's
    max_brier_vs_base_rate: float = 1.0


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
            duplicates = con.execute(f"SELECT count(*) FROM (SELECT {quoted(source.key)} FROM {schema}.outcomes "
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


    def served_vs_point_in_time(state: PlatformState, warehouse: Warehouse, feast: FeatureStore,
                                where: str, params: list, days: int | None, sample: int) -> dg.AssetCheckResult | NotJudged:
        """Compares the features logged with served requests with Feast's point-in-time retrieval for their rows.

        ``where``/``params`` select the log's days; ``days``: only the newest that many days whose rows have
        features (``None``: all selected); ``sample``: at most that many requests per day (seeded).
        """
        import duckdb

        from platform_assets.features import feast_ops
        from platform_assets.monitor.skew import feature_mismatches
        from platform_assets.warehouse import table_names

        key, column = source.key, quoted(source.key)
        # Only rows the feature store already holds can be compared: a day validated but not yet built by
        # dbt and exported (automation may run that after the day's log) counts as not yet landed.
        exported = [str(p) for p in (state.paths.feast_data / f"{mart}.parquet" for mart in use_case.feature_marts)
                    if p.exists()]
        if not exported:
            return NotJudged("no features exported yet")
        with duckdb.connect() as local:
            newest = local.execute(f"SELECT max(event_timestamp) FROM read_parquet({exported})").fetchone()[0]
        with warehouse.connect(read_only=True) as con:
            tables = table_names(con)
            if source.validated_table not in tables or f"{schema}.inference_log" not in tables:
                return NotJudged("no validated rows or no ingested inference log yet")
            landed = (f"SELECT CAST(v.{column} AS VARCHAR) FROM {source.validated_table} v "
                      f"WHERE v.{quoted(source.event_time)} <= ?")
            by_day = con.execute(
                f"SELECT {PARTITION_COLUMN}, count(*) FROM {schema}.inference_log WHERE {TRAFFIC} AND {column} IS NOT NULL "
                f"AND {where} AND CAST({column} AS VARCHAR) IN ({landed}) GROUP BY 1 ORDER BY 1 DESC",
                [*params, newest]).fetchall()
            chosen = [day for day, _ in (by_day[:days] if days else by_day)]
            if not chosen:
                return NotJudged("no served request whose row's features exist yet (a day's features are built "
                                 "after its traffic)")
            served = con.execute(
                f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {PARTITION_COLUMN} ORDER BY hash(request_id, "
                f"row)) AS _n FROM {schema}.inference_log WHERE {TRAFFIC} AND {column} IS NOT NULL AND "
                f"{PARTITION_COLUMN} IN ({', '.join('?' * len(chosen))}) AND CAST({column} AS VARCHAR) IN ({landed})) "
                "WHERE _n <= ?", [*chosen, newest, sample]).df()
            entities = con.execute(
                f"SELECT {', '.join(quoted(k) for k in dict.fromkeys(use_case.entity_keys))}, "
                f"{quoted(source.event_time)} AS event_timestamp "
                f"FROM {source.validated_table} WHERE CAST({column} AS VARCHAR) IN (SELECT UNNEST(?::VARCHAR[]))",
                [served[key].astype(str).tolist()]).df()
        offline = feast_ops.historical_features(feast.store(), entities, use_case)
        served[key], offline[key] = served[key].astype(str), offline[key].astype(str)
        features = [c for c in offline.columns if c in served.columns and c not in use_case.entity_keys
                    and not c.startswith("_") and c not in ("event_timestamp",)]
        mismatches = feature_mismatches(served, offline, features, key)
        compared = served[served[key].isin(offline[key])]
        return dg.AssetCheckResult(
            passed=mismatches.empty and len(compared) == len(served),
            metadata={
                "requests_compared": len(compared),
                "requests_by_day": dg.MetadataValue.json(
                    {str(d): int(n) for d, n in compared.groupby(PARTITION_COLUMN).size().items()}),
                "requests_without_offline_row": int(len(served) - len(compared)),
                "mismatching_requests": int(mismatches["request_id"].nunique()) if len(mismatches) else 0,
                "features": ", ".join(sorted(mismatches["feature"].unique())) if len(mismatches) else "none",
                "examples": dg.MetadataValue.md(mismatches.head(10).to_markdown(index=False) if len(mismatches) else "none"),
            },
        )

    @judged_check(
        asset=keys.inference_log,
        description=(
            "Served features equal the point-in-time features training uses for the same row (no skew): "
            "a sample of the run's days' served requests whose rows' features exist; not judged while none has."
        ),
    )
    def served_features_match_point_in_time(
        context: dg.AssetCheckExecutionContext, config: SkewSampleConfig, state: PlatformState, warehouse: Warehouse,
        feast: FeatureStore,
    ) -> dg.AssetCheckResult | NotJudged:
        """The run's days of the log, as they are ingested."""
        where, params = partition_filter(run_partition_keys(context))
        return served_vs_point_in_time(state, warehouse, feast, where, params, None, config.requests_per_day)

    @judged_check(
        asset=keys.feature_store,
        name="served_features_match_point_in_time",
        description=(
            "Served features equal the point-in-time features training uses for the same row (no skew): a sample "
            "of the served requests of the newest days whose features this build made; not judged while none."
        ),
    )
    def served_features_of_new_days_match_point_in_time(
        config: SkewSampleConfig, state: PlatformState, warehouse: Warehouse, feast: FeatureStore,
    ) -> dg.AssetCheckResult | NotJudged:
        """The newest days with features, once they are built: a day's traffic is logged before its rows land."""
        return served_vs_point_in_time(state, warehouse, feast, "true", [], config.newest_days,
                                       config.requests_per_day)


    @judged_check(
        asset=keys.labelled_predictions,
        blocking=True,
        description="Each labelled prediction is one served row of the log, once, with a 0/1 outcome known "
                    "after it was served and by the newest event seen; not judged while no outcome is known.",
    )
    def labelled_predictions_are_served_rows_with_their_outcome(warehouse: Warehouse) -> dg.AssetCheckResult | NotJudged:
        """Counts, in the warehouse, labelled rows that are duplicated, not in the log's traffic, labelled before
        they were served, or whose outcome is not 0/1: a join that fans out or leaks would show here."""
        table, label = f"{schema}.labelled_predictions", quoted(use_case.label)
        with warehouse.connect(read_only=True) as con:
            from platform_assets.warehouse import table_names

            if table not in table_names(con):
                return NotJudged(f"{table} does not exist yet")
            found = con.execute(f"""
                SELECT (SELECT count(*) FROM {table}),
                       (SELECT count(*) FROM (SELECT request_id, row FROM {table} GROUP BY 1, 2 HAVING count(*) > 1)),
                       (SELECT count(*) FROM {table} AS lp WHERE NOT EXISTS (
                           SELECT 1 FROM {schema}.inference_log AS log WHERE log.{TRAFFIC}
                           AND log.request_id = lp.request_id AND log.row = lp.row)),
                       (SELECT count(*) FROM {table} WHERE label_ts < event_ts),
                       (SELECT count(*) FROM {table} WHERE {label} IS NULL OR {label} NOT IN (0, 1))
                """).fetchone()
        rows, duplicated, not_served, before, bad = (int(v) for v in found)
        if rows == 0:
            return NotJudged("no served prediction has a known outcome yet")
        return dg.AssetCheckResult(
            passed=duplicated == 0 and not_served == 0 and before == 0 and bad == 0,
            metadata={"labelled_rows": rows, "duplicated_rows": duplicated, "rows_not_in_the_log": not_served,
                      "labelled_before_served": before, "outcomes_not_0_or_1": bad},
        )

    @judged_check(asset=keys.drift_report,
                  description="The share of drifted model inputs is under the threshold (warns); not judged "
                              "without a drift report over enough traffic.")
    def drift_share_under_threshold(
        context: dg.AssetCheckExecutionContext, config: DriftThresholdConfig
    ) -> dg.AssetCheckResult | NotJudged:
        """Warns (does not block) when too many inputs drifted: a signal to retrain."""
        report = _latest_report(context, keys.drift_report)
        share = report.get("drift_share")
        if share is None:
            return NotJudged(f"the drift report has no drift share ({report.get('drifted') or 'no report yet'}; "
                             f"{report.get('current_rows', 0)} current rows)")
        return dg.AssetCheckResult(
            passed=share <= config.max_drift_share,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"drift_share": share, "drifted": report.get("drifted", "none"),
                      "prediction_drifted": report.get("prediction_drifted")},
        )


    @judged_check(
        asset=keys.drift_report,
        blocking=True,
        description="ROC AUC on labelled traffic within max_auc_drop of the model's test AUC, and a Brier score "
                    "no worse than the window's base-rate predictor's; not judged with too few labelled rows.",
    )
    def quality_above_bound(
        context: dg.AssetCheckExecutionContext, config: QualityBoundConfig
    ) -> dg.AssetCheckResult | NotJudged:
        """Fails when the served model's quality on traffic with known outcomes fell below the bound.

        With too few labelled rows (``roc_auc`` is null) it is not judged: outcomes arrive days
        after the traffic, and a model just deployed has none yet.
        """
        report = _latest_report(context, keys.drift_report)
        auc, drop, brier = report.get("roc_auc"), report.get("auc_drop"), report.get("brier")
        if auc is None:
            return NotJudged(f"{report.get('labelled_rows', 0)} labelled rows in the window, too few (or of one "
                             "outcome only) to score")
        if report.get("base_rate_brier") is None:
            return NotJudged("the drift report has no base rate to bound the Brier score by (a report of an older version)")
        brier_bound = report["base_rate_brier"] * config.max_brier_vs_base_rate
        reference_auc = report.get("reference_roc_auc")
        return dg.AssetCheckResult(
            # Without the model's recorded test AUC there is no drop to judge: the Brier bound still is.
            passed=(drop is None or drop <= config.max_auc_drop) and brier <= brier_bound,
            metadata={"roc_auc": auc, "reference_roc_auc": reference_auc,
                      "auc_drop": drop if drop is not None else "not recorded",
                      "brier": brier, "brier_bound": brier_bound, "base_rate": report.get("base_rate"),
                      "labelled_rows": report.get("labelled_rows")},
        )

    checks = [inference_log_lines_accounted_for, served_features_match_point_in_time,
              served_features_of_new_days_match_point_in_time, labelled_predictions_are_served_rows_with_their_outcome,
              drift_share_under_threshold, quality_above_bound]
    return [*checks, outcome_rows_accounted_for] if source.label_time else checks
