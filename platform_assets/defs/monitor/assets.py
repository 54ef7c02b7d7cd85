"""Monitoring of real traffic: what the server logged, the outcomes that came later, drift and quality.

The model server appends every prediction it answers to its own log files
(``deploy/serving/inference_log.py``); ``monitor/inference_log`` ingests one
day of them per partition, counting every line. ``monitor/labelled_predictions``
joins the logged predictions to the outcomes known so far, and
``monitor/drift_report`` compares a window of served traffic with the model's
training data (Evidently) and measures its quality on the labelled part.
"""


import datetime as dt

import dagster as dg

from platform_assets.concurrency import WAREHOUSE_POOL
from platform_assets.settings import mlflow_artifact_url, mlflow_run_url
from platform_assets.declarations import UseCase
from platform_assets.defs.deploy.assets import latest_deployment
from platform_assets.defs.ingest.partitions import DAILY_PARTITIONS
from platform_assets.keys import for_use_case
from platform_assets.resources import FeatureStore, MlflowRegistry, PlatformState, Warehouse
from platform_assets.sql import quoted
from platform_assets.cost import with_cost

# Rows of real callers: the row's own fields sent, the rest computed or looked up. Requests that carry
# every model input (the deployment's smoke test, a backfill) are logged but are not traffic.
TRAFFIC = "feature_source = 'online'"


class DriftConfig(dg.Config):
    """The window of traffic the report covers and how much of it Evidently reads.

    Evidently's cost grows with rows (evidentlyai/evidently#1526; about 1.5 s at 10k
    rows and 63 s at 1M for 10 columns here), so each side is sampled down to
    ``max_rows`` (seeded): a window of any size finishes in seconds.
    """

    window_days: int = 7
    reference_days: int = 14
    max_rows: int = 20_000
    min_current_rows: int = 200
    min_labelled_rows: int = 200
    min_labelled_rows_per_day: int = 100
    seed: int = 0


def build_monitor_assets(use_case: UseCase) -> list[dg.AssetsDefinition]:
    """The monitoring assets of a use case: its inference log, outcome files (if labels come later), labelled predictions, drift report."""
    keys, source, schema = for_use_case(use_case), use_case.source, use_case.monitor_schema
    # The declared columns as SQL names (any may be a reserved word: a label called "default").
    key, label, event_time = quoted(source.key), quoted(use_case.label), quoted(source.event_time)
    entity_keys = ", ".join(quoted(k) for k in dict.fromkeys(use_case.entity_keys))

    @dg.asset(
        key=keys.inference_log,
        deps=[keys.deployment],
        partitions_def=DAILY_PARTITIONS,
        group_name=use_case.name,
        kinds={"duckdb", "json"},
        description=(
            "What the model server logged for one day of requests (by the row's event day): request id, model "
            "version, the features it used, the probability, the latency. Every line counted, bad ones rejected."
        ),
        pool=WAREHOUSE_POOL,
    )
    @with_cost
    def inference_log(context: dg.AssetExecutionContext, state: PlatformState, warehouse: Warehouse) -> dg.MaterializeResult:
        """Ingests the server's log files of the partition's day into ``monitor_<use case>.inference_log``."""
        from platform_assets.monitor import logs

        day = context.partition_key
        inference_dir = state.paths.of(use_case.name).inference
        paths = logs.day_files(inference_dir, day)
        if not paths:
            raise dg.Failure(f"no inference log files for {day} under {inference_dir / f'day={day}'}: "
                             "no request of that day was served (or the server logs elsewhere: INFERENCE_LOG_DIR)")
        files = [logs.read_log_file(p, day, use_case.id_columns()) for p in paths]
        with warehouse.connect() as con:
            counts = logs.write_day(con, day, files, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), schema)
        rows = [f.rows for f in files if len(f.rows)]
        versions = sorted({v for r in rows for v in r["model_version"].unique()})
        traffic = sum(int((r["feature_source"] == "online").sum()) for r in rows)
        for f in files:
            for rejected in f.rejected[:5]:
                context.log.warning(f"{rejected['_source_file']}:{rejected['_source_line']}: {rejected['reason']}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": counts["rows"],
                "lines": counts["lines"],
                "rejected_lines": counts["rejected"],
                "traffic_rows": traffic,
                "files": len(files),
                "model_versions": ", ".join(versions) or "none",
            }
        )


    @dg.asset(
        key=keys.outcomes,
        partitions_def=DAILY_PARTITIONS,
        group_name=use_case.name,
        kinds={"csv", "duckdb"},
        description=(
            "Outcomes as they became known: the day's outcome file (landing/outcomes/outcomes_YYYY-MM-DD.csv: "
            f"{', '.join(c for c in (source.key, source.label, source.label_time) if c)}), every row kept or "
            "rejected with its reason."
        ),
        pool=WAREHOUSE_POOL,
    )
    @with_cost
    def outcomes(context: dg.AssetExecutionContext, state: PlatformState, warehouse: Warehouse) -> dg.MaterializeResult:
        """Reads the partition day's outcome file into ``monitor_<use case>.outcomes`` (the day replaced)."""
        from platform_assets.monitor import outcomes as outcome_files

        day = context.partition_key
        outcomes_dir = state.paths.of(use_case.name).outcomes
        paths = outcome_files.day_files(outcomes_dir, day)
        if not paths:
            raise dg.Failure(f"no outcome file for {day} under {outcomes_dir} (outcomes_{day}.csv)")
        files = [outcome_files.read_outcome_file(p, day, source) for p in paths]
        with warehouse.connect() as con:
            counts = outcome_files.write_day(con, day, files, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
                                             source, schema)
            from platform_assets.warehouse import table_names

            unmatched = counts["outcomes"]
            if source.validated_table in table_names(con):
                unmatched = con.execute(
                    f"SELECT count(*) FROM {schema}.outcomes WHERE _partition = ? AND {key} NOT IN "
                    f"(SELECT CAST({key} AS VARCHAR) FROM {source.validated_table})", [day]).fetchone()[0]
        for f in files:
            for rejected in f.rejected[:5]:
                context.log.warning(f"{rejected['_source_file']}:{rejected['_source_row']}: {rejected['reason']}")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": counts["outcomes"],
            "file_rows": counts["rows"],
            "rejected_rows": counts["rejected"],
            # Outcomes of rows not validated (yet): kept; they join once the row lands.
            "not_yet_validated": int(unmatched),
            "files": dg.MetadataValue.json([{"path": f.path, "sha256": f.sha256} for f in files]),
        })


    @dg.asset(
        key=keys.labelled_predictions,
        deps=[keys.inference_log, keys.validated, *([keys.outcomes] if source.label_time else [])],
        group_name=use_case.name,
        kinds={"duckdb"},
        description="Served predictions joined to the outcomes known so far (a label may arrive days after its row).",
        pool=WAREHOUSE_POOL,
    )
    @with_cost
    def labelled_predictions(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        """Joins ``monitor_<use case>.inference_log`` traffic to outcomes known by the newest event seen."""
        from platform_assets.monitor.outcomes import labels_query  # pandas: not at code-location load
        from platform_assets.warehouse import table_names

        with warehouse.connect() as con:
            tables = table_names(con)
            if f"{schema}.inference_log" not in tables:
                raise dg.Failure(f"{schema}.inference_log does not exist yet: ingest a day of served traffic first")
            con.execute(
                f"""
                CREATE OR REPLACE TABLE {schema}.labelled_predictions AS
                WITH labels AS ({labels_query(tables, use_case)}),
                as_of AS (SELECT greatest(
                    (SELECT max(event_ts) FROM {schema}.inference_log WHERE {TRAFFIC}),
                    (SELECT max({event_time}) FROM {source.validated_table})) AS t)
                SELECT log.request_id, log.row, log.event_ts, log._partition, log.{key}, log.model_name,
                       log.model_version, log.probability, labels.{label}, labels.label_ts,
                       date_diff('second', log.event_ts, labels.label_ts) / 86400.0 AS label_delay_days
                FROM {schema}.inference_log AS log
                JOIN labels ON labels.{key} = CAST(log.{key} AS VARCHAR), as_of
                WHERE log.{TRAFFIC} AND labels.label_ts <= as_of.t
                """
            )
            served, labelled, p50, p90 = con.execute(
                f"SELECT (SELECT count(*) FROM {schema}.inference_log WHERE {TRAFFIC}), count(*), "
                "quantile_cont(label_delay_days, 0.5), quantile_cont(label_delay_days, 0.9) "
                f"FROM {schema}.labelled_predictions"
            ).fetchone()
        context.log.info(f"{labelled} of {served} served predictions have a known outcome")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": int(labelled),
                "served_rows": int(served),
                "unlabelled_rows": int(served - labelled),
                "label_delay_days_p50": float(p50) if p50 is not None else None,
                "label_delay_days_p90": float(p90) if p90 is not None else None,
            }
        )


    @dg.asset(
        key=keys.drift_report,
        deps=[keys.inference_log, keys.labelled_predictions, keys.training_set, keys.deployment],
        group_name=use_case.name,
        kinds={"evidently", "html"},
        description=(
            "Evidently report on the served model's recent traffic against its training data: drift per feature, "
            "prediction drift, and ROC AUC / Brier on the traffic whose outcome is known."
        ),
        pool=WAREHOUSE_POOL,
    )
    @with_cost
    def drift_report(
        context: dg.AssetExecutionContext, config: DriftConfig, state: PlatformState, warehouse: Warehouse,
        mlflow_registry: MlflowRegistry, feast: FeatureStore,
    ) -> dg.MaterializeResult:
        """Compares the last ``window_days`` of the served model's valid traffic with its newest training days."""
        import pandas as pd

        from platform_assets.features import feast_ops
        from platform_assets.features.training_file import column_max
        from platform_assets.monitor import drift
        from platform_assets.train.network import load_bundle
        from platform_assets.warehouse import table_names

        paths = state.paths.of(use_case.name)
        deployment = latest_deployment(context.instance, keys.deployment)
        version = str(deployment["model_version"])
        bundle = load_bundle(deployment["bundle"])
        features = bundle.preprocessor.input_names
        with warehouse.connect(read_only=True) as con:
            days = [r[0] for r in con.execute(
                f"SELECT DISTINCT _partition FROM {schema}.inference_log WHERE {TRAFFIC} AND model_version = ? "
                "ORDER BY 1 DESC LIMIT ?", [version, config.window_days]).fetchall()]
            marks = ", ".join("?" for _ in days) or "NULL"
            # Requests whose row validation later quarantined are counted, not compared:
            # the reference holds valid rows only.
            invalid = (f"AND CAST({key} AS VARCHAR) NOT IN (SELECT CAST({key} AS VARCHAR) FROM "
                       f"{source.quarantine_table} WHERE {key} IS NOT NULL)"
                       if source.quarantine_table in table_names(con) else "")
            quarantined = con.execute(
                f"SELECT count(*) FROM {schema}.inference_log WHERE {TRAFFIC} AND model_version = ? "
                f"AND _partition IN ({marks}) AND NOT (TRUE {invalid})", [version, *days]).fetchone()[0] if invalid else 0
            # DuckDB samples before a WHERE of the same query: filter in a subquery, then sample.
            inputs = ", ".join(quoted(f) for f in features)
            current = con.execute(
                f"SELECT * FROM (SELECT {inputs}, probability FROM {schema}.inference_log WHERE {TRAFFIC} "
                f"AND model_version = ? AND _partition IN ({marks}) {invalid}) "
                f"USING SAMPLE reservoir({config.max_rows} ROWS) REPEATABLE ({config.seed})", [version, *days]).df()
            # No join yet (the first report after a deployment may come before any outcome): nothing labelled.
            labelled = con.execute(
                f"SELECT _partition, {label} AS outcome, probability FROM {schema}.labelled_predictions "
                "WHERE model_version = ? "
                f"AND _partition IN ({marks})", [version, *days]).df() if f"{schema}.labelled_predictions" in table_names(
                con) else pd.DataFrame(columns=["_partition", "outcome", "probability"])
            # The reference: every valid row of the newest training days, with its point-in-time features
            # (the training set itself holds only the labelled ones, a sample biased by label delay).
            trained_until = pd.Timestamp(column_max(paths.training_set, "event_timestamp"))
            entities = con.execute(
                f"SELECT {entity_keys}, {event_time} AS event_timestamp "
                f"FROM {source.validated_table} WHERE {event_time} <= ? "
                f"AND {event_time} > ? - to_days(?)",
                [trained_until.tz_localize(None) if trained_until.tzinfo else trained_until,
                 trained_until.tz_localize(None) if trained_until.tzinfo else trained_until,
                 config.reference_days]).df()
        entities = entities.sample(n=min(config.max_rows, len(entities)), random_state=config.seed)
        reference = drift.reference_window(
            feast_ops.historical_features(feast.store(), entities, use_case), config.reference_days)
        reference = reference.sample(n=min(config.max_rows, len(reference)), random_state=config.seed)
        reference = reference.assign(probability=bundle.predict_proba(reference))
        client = mlflow_registry.client()
        run = client.get_run(client.get_model_version(deployment["model_name"], version).run_id)
        summary = None
        html = paths.reports / "drift" / f"drift_{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}.html"
        if len(current) >= config.min_current_rows:
            summary = drift.drift_report(reference, current, [*features, "probability"], html, config.max_rows, config.seed)
            (paths.reports / "drift" / "drift_report.html").write_bytes(html.read_bytes())
            # Beside the served version's training run, where MLflow's UI opens it (a file:// link does not open).
            client.log_artifact(run.info.run_id, str(html), artifact_path="drift")
        else:
            not_written = drift.not_written(len(current), config.min_current_rows, config.window_days)
            context.log.warning(not_written)
        quality = drift.quality(labelled, config.min_labelled_rows)
        reference_auc = run.data.metrics.get("test_roc_auc")
        figures = drift.figures(summary, features, quality, reference_auc)
        # Per day, so that a sensor can tell when quality fell (and retrain on the days after it).
        daily = drift.daily_quality(labelled, config.min_labelled_rows_per_day)
        context.log.info(f"drift over {days[-1] if days else '-'}..{days[0] if days else '-'} of v{version}: {figures}")
        metadata = {
            **figures,
            "model_version": version,
            "window_start": days[-1] if days else None,
            "window_end": days[0] if days else None,
            "current_rows": len(current),
            "quarantined_traffic_rows": int(quarantined),
            "reference_rows": len(reference),
            "mlflow_run": dg.MetadataValue.url(mlflow_run_url(run.info.experiment_id, run.info.run_id)),
            "daily_quality": dg.MetadataValue.json(daily),
        }
        if summary is not None:
            metadata["report"] = dg.MetadataValue.url(
                mlflow_artifact_url(run.info.experiment_id, run.info.run_id, f"drift/{html.name}"))
            metadata["report_path"] = dg.MetadataValue.path(str(html))
            metadata["drift_scores"] = dg.MetadataValue.json({k: round(v, 6) for k, v in summary.scores.items()})
            metadata["drift_by_column"] = dg.MetadataValue.md(drift.drift_table(summary, [*features, "probability"]))
            # One entry per column: the asset's Plots tab draws each column's drift over time.
            metadata.update({f"drift_score/{c}": float(v) for c, v in summary.scores.items()})
        else:
            metadata["report"] = not_written
        return dg.MaterializeResult(metadata=metadata)

    assets = [inference_log, labelled_predictions, drift_report]
    return [*assets, outcomes] if source.label_time else assets
