"""Feature store operations as plain functions: export, apply, materialize, retrieve, compare."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import duckdb
    import feast

from platform_assets.features.names import (
    ENTITY_COLUMNS,
    FEATURE_SERVICE,
    HISTORY_FEATURES,
    MART_TABLES,
    ONLINE_FEATURE_SERVICE,
    ONLINE_FEATURES,
    SPLITS,
)


def export_marts(con: "duckdb.DuckDBPyConnection", data_dir: Path, schema: str = "features") -> dict[str, int]:
    """Writes each dbt mart to ``<data_dir>/<mart>.parquet`` atomically; returns row counts.

    DuckDB writes timestamps in microseconds, which Feast's DuckDB offline store reads back.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for table in MART_TABLES:
        target = data_dir / f"{table}.parquet"
        tmp = data_dir / f".{table}.parquet.tmp"
        con.execute(f"COPY (SELECT * FROM {schema}.{table} ORDER BY event_timestamp) TO '{tmp}' (FORMAT parquet)")
        tmp.replace(target)
        counts[table] = con.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
    return counts


def earliest_change(
    con: "duckdb.DuckDBPyConnection", data_dir: Path, schema: str = "features", tables: tuple[str, ...] = MART_TABLES
) -> dt.datetime | None:
    """The oldest event time of a row of ``tables`` that the last export does not hold as it is now.

    New rows, late rows of an old day (a backfilled partition) and rows whose
    values changed all count; so materializing from this time on brings every
    change online, however old its event time. Call before :func:`export_marts`.

    Returns:
        That time; the oldest event time of all when a mart was never exported;
        ``None`` when the marts equal their last export.
    """
    times = []
    for table in tables:
        previous = data_dir / f"{table}.parquet"
        if previous.exists():
            query = (
                f"SELECT min(event_timestamp) FROM (SELECT * FROM {schema}.{table} "
                f"EXCEPT SELECT * FROM read_parquet('{previous}'))"
            )
        else:
            query = f"SELECT min(event_timestamp) FROM {schema}.{table}"
        times.append(con.execute(query).fetchone()[0])
    times = [t for t in times if t is not None]
    return min(times) if times else None


def materialized_until(store: "feast.FeatureStore") -> dict[str, dt.datetime | None]:
    """How far each feature view the model server reads online has been materialized (``None``: never)."""
    service = store.get_feature_service(ONLINE_FEATURE_SERVICE)
    views = [store.get_feature_view(p.name) for p in service.feature_view_projections]
    return {view.name: view.most_recent_end_time for view in views}


def incremental_start(
    changed_since: dt.datetime | None, until: dict[str, dt.datetime | None], oldest: dt.datetime, newest: dt.datetime
) -> dt.datetime | None:
    """Where the next materialization starts: the older of the first change and the online horizon.

    Args:
        changed_since: From :func:`earliest_change`.
        until: From :func:`materialized_until`.
        oldest: The oldest event time of the marts (where a view never materialized starts).
        newest: The newest event time of the marts.

    Returns:
        The start, or ``None`` when the online store already holds everything.
    """
    if not until or any(t is None for t in until.values()):
        return oldest
    horizon = min(_naive_utc(t) for t in until.values())
    candidates = [t for t in (changed_since, horizon if horizon <= newest else None) if t is not None]
    return min(candidates) if candidates else None


def _naive_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as a naive UTC datetime (Feast returns aware ones, DuckDB naive UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def load_definitions(repo_path: Path) -> list:
    """Imports ``features.py`` of the Feast repository afresh and returns its Feast objects.

    Loaded from its file (not through ``sys.path``) so that the paths it reads
    from ``PLATFORM_HOME`` are those of the current state root.
    """
    import importlib.util

    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    path = Path(repo_path).resolve() / "features.py"
    spec = importlib.util.spec_from_file_location("_feature_repo_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kinds = (Entity, DataSource, FeatureView, FeatureService)
    return [obj for obj in vars(module).values() if isinstance(obj, kinds)]


def apply_repo(store: "feast.FeatureStore", repo_path: Path) -> list[str]:
    """Registers every object defined in the Feast repository, as ``feast apply`` does."""
    objects = load_definitions(repo_path)
    store.apply(objects)
    return sorted(o.name for o in objects)


def _release_ibis_backend() -> None:
    """Drops the default DuckDB connection that Feast's ibis-based offline store leaves open.

    Left alive, DuckDB 2.0's bindings print pages of "nanobind: leaked" at
    interpreter exit; ibis opens a new one when Feast next needs it.
    """
    import ibis

    ibis.options.default_backend = None


def materialize_range(store: "feast.FeatureStore", start: dt.datetime, end: dt.datetime) -> None:
    """Loads the latest feature values between ``start`` and ``end`` into the online store."""
    store.materialize(start_date=start, end_date=end)
    _release_ibis_backend()


def entity_rows(labelled: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Builds Feast's entity dataframe from labelled applications.

    Each row asks for the features as of the application time (the moment the
    decision was made). Only applications whose outcome is known by ``as_of``
    take part, so the training set never holds labels from the future.
    """
    known = labelled[labelled["label_ts"] <= as_of]
    rows = known.rename(columns={"application_ts": "event_timestamp"})
    columns = [*ENTITY_COLUMNS, "age_band", "is_default", "label_ts"]
    return rows[columns].sort_values(["event_timestamp", "application_id"]).reset_index(drop=True)


def historical_features(store: "feast.FeatureStore", entities: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time correct features of the model's feature service for ``entities``."""
    service = store.get_feature_service(FEATURE_SERVICE)
    df = store.get_historical_features(entity_df=entities, features=service).to_df()
    _release_ibis_backend()
    return df.sort_values(["event_timestamp", "application_id"]).reset_index(drop=True)


def feature_names(store: "feast.FeatureStore") -> list[str]:
    """Names of the features in the model's feature service, in service order."""
    service = store.get_feature_service(FEATURE_SERVICE)
    return [f.name for projection in service.feature_view_projections for f in projection.features]


def split_by_time(df: pd.DataFrame, fractions: tuple[float, float] = (0.7, 0.85)) -> pd.Series:
    """Labels each row train, validation or test by event time (oldest first).

    Rows are ordered by time; the first ``fractions[0]`` are train, up to
    ``fractions[1]`` validation, the rest test, so later data never trains a
    model that is judged on earlier data.
    """
    order = np.argsort(df["event_timestamp"].to_numpy(), kind="stable")
    position = np.empty(len(df), dtype=np.float64)
    position[order] = np.arange(len(df)) / max(len(df), 1)
    labels = np.where(position < fractions[0], SPLITS[0], np.where(position < fractions[1], SPLITS[1], SPLITS[2]))
    return pd.Series(labels, index=df.index, name="split")


def latest_offline_activity(data_dir: Path, sample: int, seed: int = 0) -> pd.DataFrame:
    """What the online store should serve for a sample of applicants: their latest activity row.

    The online store keeps one row per applicant, the one with the newest event
    time (``fct_applicant_activity``: the applicant's applications over the 365
    days up to their last application day).
    """
    activity = pd.read_parquet(data_dir / "fct_applicant_activity.parquet")
    latest = activity.sort_values(["event_timestamp"], kind="stable").groupby("applicant_id", sort=False).tail(1)
    return latest.sample(n=min(sample, len(latest)), random_state=seed).reset_index(drop=True)


def online_activity_mismatches(store: "feast.FeatureStore", expected: pd.DataFrame) -> pd.DataFrame:
    """Compares the online activity of each applicant in ``expected`` with the expected lists, exactly.

    Args:
        store: The feature store.
        expected: One row per applicant (``applicant_id`` and each of ``ONLINE_FEATURES``),
            as returned by :func:`latest_offline_activity`.

    Returns:
        One row per differing (applicant, feature), with both values; empty when online = offline.
    """
    service = store.get_feature_service(ONLINE_FEATURE_SERVICE)
    keys = [{"applicant_id": int(a)} for a in expected["applicant_id"]]
    online = store.get_online_features(features=service, entity_rows=keys).to_dict() if keys else {}
    diffs = []
    for name in ONLINE_FEATURES:
        for i, (off, on) in enumerate(zip(expected[name], online.get(name, []))):
            off_list = None if off is None else [float(v) for v in off]
            on_list = None if on is None else [float(v) for v in on]
            if off_list != on_list:
                diffs.append({"applicant_id": keys[i]["applicant_id"], "feature": name,
                              "offline": off_list, "online": on_list})
    return pd.DataFrame(diffs, columns=["applicant_id", "feature", "offline", "online"])


def leakage_findings(training: pd.DataFrame, history: pd.DataFrame, as_of: pd.Timestamp) -> dict[str, int]:
    """Counts the ways the training set could see the future.

    Args:
        training: The training set (features, ``event_timestamp``, ``label_ts``, ``split``).
        history: The dbt mart of applicant history, one row per application.
        as_of: When the set was built (the newest application seen).

    Returns:
        ``history_not_as_of_application``: rows whose history features differ
        from the values as of their own application; ``labels_after_cutoff``:
        labels not yet known when the set was built; ``splits_out_of_order``:
        validation or test rows older than the newest row of an earlier split.
    """
    joined = training.merge(history, on="application_id", suffixes=("", "_asof"), how="left")
    differs = pd.Series(False, index=joined.index)
    for name in (n for n in HISTORY_FEATURES if n in training.columns and f"{n}_asof" in joined.columns):
        differs |= joined[name].ne(joined[f"{name}_asof"])
    newest = training.groupby("split")["event_timestamp"].max()
    order = [s for s in SPLITS if s in newest.index]
    out_of_order = sum(
        int((training.loc[training["split"] == later, "event_timestamp"] < newest[earlier]).sum())
        for earlier, later in zip(order, order[1:])
    )
    return {
        "history_not_as_of_application": int(differs.sum()),
        "labels_after_cutoff": int((training["label_ts"] > as_of).sum()),
        "splits_out_of_order": out_of_order,
    }


def freshness_findings(
    newest_source: dt.datetime | None, newest_features: dt.datetime | None, until: dict[str, dt.datetime | None],
    now: dt.datetime,
) -> dict[str, float | None]:
    """How far the features lag behind their input data, and the online store behind the features.

    Measured against the data, not the clock: the input's own age is the
    freshness check of the raw data; this says whether the feature stage kept up.

    Args:
        newest_source: Newest application time in the validated data.
        newest_features: Newest event time in the exported marts.
        until: From :func:`materialized_until`.
        now: The current time (naive UTC), for the reported age.

    Returns:
        ``feature_lag_hours`` (validated newest minus feature newest; ``None``
        when there are no features), ``online_lag_hours`` (feature newest minus
        the least materialized view; ``None`` when a view was never
        materialized) and ``feature_age_hours`` (now minus feature newest).
    """
    hours = dt.timedelta(hours=1)
    if newest_features is None:
        return {"feature_lag_hours": None, "online_lag_hours": None, "feature_age_hours": None}
    newest_features = _naive_utc(newest_features)
    feature_lag = (_naive_utc(newest_source) - newest_features) / hours if newest_source is not None else 0.0
    online_lag = None
    if until and all(t is not None for t in until.values()):
        online_lag = max((newest_features - min(_naive_utc(t) for t in until.values())) / hours, 0.0)
    return {
        "feature_lag_hours": max(feature_lag, 0.0),
        "online_lag_hours": online_lag,
        "feature_age_hours": (now - newest_features) / hours,
    }
