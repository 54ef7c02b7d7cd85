"""The feature store and the training set, read from it point-in-time correctly."""


import datetime as dt
import hashlib

import dagster as dg

from platform_assets.automation import OUTCOMES
from platform_assets.concurrency import WAREHOUSE_POOL
from platform_assets.features.names import MART_TABLES, ONLINE_MARTS
from platform_assets.resources import FeatureStore, PlatformState, Warehouse
from platform_assets.validate.assets import VALIDATED_APPLICATIONS

from platform_assets.keys import FEATURE_STORE, TRAINING_SET, feature_key

MART_KEYS = [feature_key(table) for table in MART_TABLES]


@dg.asset(
    key=FEATURE_STORE,
    deps=MART_KEYS,
    group_name="features",
    kinds={"feast", "sqlite", "parquet"},
    description=(
        "Feast registry, offline exports of the dbt marts, and the online store loaded with each "
        "applicant's latest activity."
    ),
    pool=WAREHOUSE_POOL,
)
def feature_store(
    context: dg.AssetExecutionContext, state: PlatformState, warehouse: Warehouse, feast: FeatureStore
) -> dg.MaterializeResult:
    """Exports the dbt marts to Parquet, applies the Feast repository and materializes what changed."""
    from platform_assets.features import feast_ops

    data_dir = state.paths.feast / "data"
    with warehouse.connect(read_only=True) as con:
        # Only the online view's mart is materialized (the others serve training, offline).
        changed_since = feast_ops.earliest_change(con, data_dir, tables=ONLINE_MARTS)
        counts = feast_ops.export_marts(con, data_dir)
        oldest, newest = con.execute(
            f"SELECT min(event_timestamp), max(event_timestamp) FROM features.{ONLINE_MARTS[0]}"
        ).fetchone()
    store = feast.store()
    applied = feast_ops.apply_repo(store, feast.repo_path)
    start = feast_ops.incremental_start(changed_since, feast_ops.materialized_until(store), oldest, newest)
    if start is not None:
        # From the oldest change (or the online horizon) on: the latest value of every changed entity.
        feast_ops.materialize_range(store, start - dt.timedelta(seconds=1), newest + dt.timedelta(seconds=1))
    context.log.info(f"applied {applied}; exported {counts}; materialized from {start}")
    return dg.MaterializeResult(
        metadata={
            "offline_rows": dg.MetadataValue.json(counts),
            "feast_objects": ", ".join(applied),
            "materialized_from": start.isoformat() if start is not None else "nothing changed",
            "materialized_until": newest.isoformat(),
            "online_store": dg.MetadataValue.path(str(state.paths.feast / "online_store.db")),
        }
    )


class TrainingSetConfig(dg.Config):
    """Which labelled applications the training set holds and how they are split by time.

    ``since`` bounds the window: ``"YYYY-MM-DD"`` keeps the applications of that day
    on (the drift sensor sets it to the day live quality fell, so that a retrain
    learns the relation as it is now); ``"all"`` takes all history; empty keeps the
    window of the newest training set, so that a weekly or new-label retrain after
    a concept drift does not go back to days that describe the old relation.
    """

    train_fraction: float = 0.7
    validation_fraction: float = 0.15
    since: str = ""
    # A window (since) holding fewer labelled applications fails rather than train on too few.
    min_rows: int = 500


def training_window(requested: str, previous: str | None) -> str | None:
    """The first day of the training window: ``requested``, or the previous window when empty.

    Returns:
        ``"YYYY-MM-DD"``, or ``None`` for all history.
    """
    import datetime as dt

    value = requested.strip() or (previous or "")
    if value in ("", "all"):
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"training_set config 'since': {value!r} is not a day (YYYY-MM-DD), 'all' or empty") from None


@dg.asset(
    key=TRAINING_SET,
    deps=[FEATURE_STORE, VALIDATED_APPLICATIONS, OUTCOMES],
    group_name="features",
    kinds={"feast", "parquet"},
    description="Labelled applications with point-in-time features, split by time into train/validation/test.",
    pool=WAREHOUSE_POOL,
)
def training_set(
    context: dg.AssetExecutionContext,
    config: TrainingSetConfig,
    state: PlatformState,
    warehouse: Warehouse,
    feast: FeatureStore,
) -> dg.MaterializeResult:
    """Retrieves historical features for each labelled application as of its application time."""
    import pandas as pd

    from platform_assets.features import feast_ops

    from platform_assets.warehouse import table_names

    with warehouse.connect(read_only=True) as con:
        # The outcome from an outcome file when one landed (monitor/outcomes), else the application's own
        # (a history extract carries it); applications without either are not labelled yet.
        outcomes = "monitor.outcomes" in table_names(con)
        labelled = con.execute(
            "SELECT a.application_id, a.applicant_id, a.application_ts, a.age_band, "
            + ("coalesce(o.is_default, a.is_default) AS is_default, coalesce(o.label_ts, a.label_ts) AS label_ts "
               "FROM validated.applications a LEFT JOIN monitor.outcomes o USING (application_id)" if outcomes else
               "a.is_default, a.label_ts FROM validated.applications a")
        ).df()
    as_of = labelled["application_ts"].max()
    previous = context.instance.get_latest_materialization_event(TRAINING_SET)
    previous_since = None
    if previous is not None and "since" in previous.asset_materialization.metadata:
        previous_since = previous.asset_materialization.metadata["since"].value
    since = training_window(config.since, previous_since if previous_since != "all" else None)
    if since is not None:
        labelled = labelled[labelled["application_ts"] >= pd.Timestamp(since)]
    entities = feast_ops.entity_rows(labelled, as_of)
    entities["is_default"] = entities["is_default"].astype("int64")  # known outcomes only: no nulls left
    if since is not None and len(entities) < config.min_rows:
        raise ValueError(
            f"the training window from {since or 'the first day'} holds {len(entities)} labelled applications "
            f"known by {as_of}; at least {config.min_rows} are needed (config min_rows): wait for more outcomes "
            "or widen the window (config since)")
    df = feast_ops.historical_features(feast.store(), entities)
    cut = (config.train_fraction, config.train_fraction + config.validation_fraction)
    df["split"] = feast_ops.split_by_time(df, cut)
    path = state.paths.training_set
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".training_set.parquet.tmp")
    df.to_parquet(tmp, index=False, coerce_timestamps="us", allow_truncated_timestamps=True)
    tmp.replace(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sizes = df["split"].value_counts().to_dict()
    context.log.info(f"training set {len(df)} rows as of {as_of}: {sizes}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest),
        metadata={
            "dagster/row_count": len(df),
            "split_rows": dg.MetadataValue.json({k: int(v) for k, v in sizes.items()}),
            "labels_known_as_of": pd.Timestamp(as_of).isoformat(),
            "since": since or "all",
            "default_rate": float(df["is_default"].mean()),
            "digest": digest,
            "path": dg.MetadataValue.path(str(path)),
        },
    )
