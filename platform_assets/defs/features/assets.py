"""The feature store and the training set, read from it point-in-time correctly."""


import datetime as dt

import dagster as dg

from platform_assets.concurrency import WAREHOUSE_POOL
from platform_assets.declarations import UseCase
from platform_assets.features.training_set import LINEAGE_COLUMNS, build_training_file, file_listings, files_table, \
    labelled_rows, training_window
from platform_assets.keys import for_use_case
from platform_assets.resources import FeatureStore, PlatformState, Warehouse
from platform_assets.cost import with_cost


class TrainingSetConfig(dg.Config):
    """Which labelled rows the training set holds and how they are split by time.

    ``since`` bounds the window: ``"YYYY-MM-DD"`` keeps the rows of that day
    on (the drift sensor sets it to the day live quality fell, so that a retrain
    learns the relation as it is now); ``"all"`` takes all history; empty keeps the
    window of the newest training set, so that a weekly or new-label retrain after
    a concept drift does not go back to days that describe the old relation.
    """

    train_fraction: float = 0.7
    validation_fraction: float = 0.15
    since: str = ""
    # A window (since) holding fewer labelled rows fails rather than train on too few.
    min_rows: int = 500


def build_derived_mart_asset(use_case: UseCase) -> dg.AssetsDefinition:
    """``<use case>/features/fct_<use case>_features``: for a use case that declares no dbt mart, the validated
    rows' own columns as model inputs (:mod:`platform_assets.features.derived`)."""
    keys = for_use_case(use_case)
    mart = use_case.feature_marts[0]

    @dg.asset(
        key=keys.feature(mart),
        deps=[keys.validated],
        group_name=use_case.name,
        kinds={"duckdb"},
        description=(f"The model inputs of {use_case.name}: the columns of {use_case.source.validated_table} that may "
                     "be features, derived from the declaration and the schema (no dbt model declared)."),
        pool=WAREHOUSE_POOL,
    )
    @with_cost
    def derived_mart(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
        """Rebuilds the mart from every validated row."""
        from platform_assets.features import derived

        found = derived.derived_features(use_case)
        with warehouse.transaction() as con:
            rows = derived.build_mart(con, use_case, found)
        context.log.info(f"features.{mart}: {rows} rows; numeric {list(found.numeric)}, text {list(found.text)}")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": rows,
            "model_inputs": dg.MetadataValue.json({"numeric": list(found.numeric), "text": list(found.text)}),
            "dagster/column_schema": dg.TableSchema(columns=[
                *(dg.TableColumn(k) for k in dict.fromkeys(use_case.entity_keys)),
                dg.TableColumn("event_timestamp", "timestamp", description=f"{use_case.source.event_time}"),
                *(dg.TableColumn(c, "double") for c in found.numeric),
                *(dg.TableColumn(c, "varchar") for c in found.text)]),
            "sql": dg.MetadataValue.md(f"```sql\n{derived.mart_sql(use_case, found)}\n```"),
        })

    return derived_mart


def build_feature_assets(use_case: UseCase) -> list[dg.AssetsDefinition]:
    """``<use case>/features/feature_store`` and ``<use case>/features/training_set``."""
    keys = for_use_case(use_case)

    @dg.asset(
        key=keys.feature_store,
        deps=[keys.feature(m) for m in use_case.feature_marts],
        group_name=use_case.name,
        kinds={"feast", "sqlite", "parquet"},
        description=(
            "Feast registry, offline exports of the dbt marts, and the online store loaded with each "
            "entity's newest row of the online views."
        ),
        pool=WAREHOUSE_POOL,
    )
    @with_cost
    def feature_store(
        context: dg.AssetExecutionContext, state: PlatformState, warehouse: Warehouse, feast: FeatureStore
    ) -> dg.MaterializeResult:
        """Exports the dbt marts to Parquet, applies the Feast repository and materializes what changed."""
        from platform_assets.features import feast_ops
        from platform_assets.features import online_load
        from platform_assets.ingest.load import batch_rows

        data_dir = state.paths.feast_data
        with warehouse.connect(read_only=True) as con:
            # Only the online views' marts are materialized (the others serve training, offline).
            changed_since = online_load.earliest_change(con, data_dir, use_case.online_marts)
            counts = feast_ops.export_marts(con, data_dir, use_case.feature_marts)
            times = " UNION ALL ".join(f"SELECT event_timestamp FROM features.{m}"
                                       for m in use_case.online_marts or use_case.feature_marts)
            oldest, newest = con.execute(f"SELECT min(event_timestamp), max(event_timestamp) FROM ({times})").fetchone()
        store = feast.store()
        derived = []
        if use_case.derives_features:  # the view and service of the derived mart, unless the repository has its own
            from platform_assets.features import derived as derived_features

            derived = derived_features.feast_objects(use_case, derived_features.derived_features(use_case), data_dir)
        applied = feast_ops.apply_repo(store, feast.repo_path, derived)
        start = None
        if use_case.online_marts:
            start = online_load.incremental_start(changed_since, online_load.materialized_until(store, use_case), oldest,
                                                newest)
        windows = []
        if start is not None:
            # From the oldest change (or the online horizon) on: the latest value of every changed entity, a
            # window of days at a time (PLATFORM_BATCH_ROWS rows at most) so that memory follows a window.
            with warehouse.connect(read_only=True) as con:
                day_rows = online_load.rows_by_day(con, use_case.online_marts, start - dt.timedelta(seconds=1))
            windows = online_load.materialize_windows(start - dt.timedelta(seconds=1), newest + dt.timedelta(seconds=1),
                                                    day_rows, batch_rows())
            for window_start, window_end in windows:
                online_load.materialize_range(store, window_start, window_end)
        context.log.info(f"applied {applied}; exported {counts}; materialized from {start} in {len(windows)} window(s)")
        return dg.MaterializeResult(
            metadata={
                "offline_rows": dg.MetadataValue.json(counts),
                "feast_objects": ", ".join(applied),
                "materialized_from": start.isoformat() if start is not None else "nothing changed",
                "materialized_until": newest.isoformat(),
                "materialized_windows": len(windows),
                "online_store": dg.MetadataValue.path(str(state.paths.feast / "online_store.db")),
            }
        )


    @dg.asset(
        key=keys.training_set,
        deps=[keys.feature_store, keys.validated, *([keys.outcomes] if use_case.source.label_time else [])],
        group_name=use_case.name,
        kinds={"feast", "parquet"},
        description="Labelled rows with point-in-time features, split by time into train/validation/test.",
        pool=WAREHOUSE_POOL,
    )
    @with_cost
    def training_set(
        context: dg.AssetExecutionContext,
        config: TrainingSetConfig,
        state: PlatformState,
        warehouse: Warehouse,
        feast: FeatureStore,
    ) -> dg.MaterializeResult:
        """Retrieves historical features for each labelled row as of its event time."""
        import pandas as pd

        from platform_assets.features import feast_ops
        from platform_assets.ingest.load import batch_rows
        from platform_assets.warehouse import table_names

        previous = context.instance.get_latest_materialization_event(keys.training_set)
        previous_since = None
        if previous is not None and "since" in previous.asset_materialization.metadata:
            previous_since = previous.asset_materialization.metadata["since"].value
        since = training_window(config.since, previous_since if previous_since != "all" else None)
        with warehouse.connect(read_only=True) as con:
            labelled = labelled_rows(con, use_case, use_case.monitor_table("outcomes") in table_names(con))
            as_of = labelled[use_case.source.event_time].max()
            if since is not None:
                labelled = labelled[labelled[use_case.source.event_time] >= pd.Timestamp(since)]
            entities = feast_ops.entity_rows(labelled, as_of, use_case, keep=LINEAGE_COLUMNS)
            del labelled
            # The files as read with these rows: which of them the training set holds is recorded in it.
            listings = file_listings(con, use_case)
        entities[use_case.label] = entities[use_case.label].astype("int64")  # known outcomes only: no nulls left
        if since is not None and len(entities) < config.min_rows:
            raise ValueError(
                f"the training window from {since or 'the first day'} holds {len(entities)} labelled rows "
                f"known by {as_of}; at least {config.min_rows} are needed (config min_rows): wait for more outcomes "
                "or widen the window (config since)")
        # Feast answers PLATFORM_BATCH_ROWS entity rows at a time, each piece appended to the file: memory follows
        # a piece. It gets the entity rows alone; the files they came from are put back on its answer, row for row.
        store = feast.store()
        path = state.paths.of(use_case.name).training_set
        built = build_training_file(
            entities, lambda piece: feast_ops.historical_features(store, piece, use_case), use_case, listings, path,
            manifest={"since": since or "all", "labels_known_as_of": pd.Timestamp(as_of).isoformat()},
            fractions=(config.train_fraction, config.train_fraction + config.validation_fraction),
            chunk_rows=batch_rows())
        if built.rows_without_features:
            context.log.warning(f"{built.rows_without_features} of {len(entities)} labelled rows have no features in "
                                "the offline store yet (built before their day was validated): left out of the "
                                "training set")
        digest, files = built.digest, built.files
        context.log.info(f"training set {built.rows} rows as of {as_of}: {built.split_rows}")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest),
            metadata={
                "dagster/row_count": built.rows,
                "split_rows": dg.MetadataValue.json(built.split_rows),
                "labels_known_as_of": pd.Timestamp(as_of).isoformat(),
                "since": since or "all",
                "positive_rate": built.positives / built.rows if built.rows else float("nan"),
                "digest": digest,
                "path": dg.MetadataValue.path(str(path)),
                "files_trained_on": dg.MetadataValue.md(files_table(files)),
                "rows_without_features": built.rows_without_features,
            },
        )

    return [feature_store, training_set]
