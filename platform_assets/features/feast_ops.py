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

from platform_assets.declarations import UseCase
from platform_assets.features.training_file import SPLITS
from platform_assets.features.training_set import LABEL_TIME

# Feast's entity dataframe and the marts name the time of each row so.
EVENT_TIMESTAMP = "event_timestamp"
# The training set's column of when each label became known.


def export_marts(
    con: "duckdb.DuckDBPyConnection", data_dir: Path, marts: tuple[str, ...], schema: str = "features"
) -> dict[str, int]:
    """Writes each dbt mart in ``marts`` to ``<data_dir>/<mart>.parquet`` atomically; returns row counts.

    DuckDB writes timestamps in microseconds, which Feast's DuckDB offline store reads back.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for table in marts:
        target = data_dir / f"{table}.parquet"
        tmp = data_dir / f".{table}.parquet.tmp"
        con.execute(f"COPY (SELECT * FROM {schema}.{table} ORDER BY event_timestamp) TO '{tmp}' (FORMAT parquet)")
        tmp.replace(target)
        counts[table] = con.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
    return counts


def online_views(store: "feast.FeatureStore", use_case: UseCase) -> list:
    """The feature views of the use case's online feature service (none without one)."""
    if not use_case.online_feature_service:
        return []
    service = store.get_feature_service(use_case.online_feature_service)
    return [store.get_feature_view(p.name) for p in service.feature_view_projections]


def _naive_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as a naive UTC datetime (Feast returns aware ones, DuckDB naive UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def load_definitions(repo_path: Path) -> list:
    """Imports every ``*.py`` of the Feast repository afresh (one per use case) and returns its Feast objects.

    Loaded from their files (not through ``sys.path``) so that the paths they read
    from ``PLATFORM_HOME`` are those of the current state root. Objects are
    returned once each (a file may import another's).
    """
    import importlib.util

    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    kinds = (Entity, DataSource, FeatureView, FeatureService)
    found: dict[tuple[type, str], object] = {}
    for path in sorted(Path(repo_path).resolve().glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"_feature_repo_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for obj in vars(module).values():
            if isinstance(obj, kinds):
                kind = next(k for k in kinds if isinstance(obj, k))
                if (kind, obj.name) in found and found[(kind, obj.name)] is not obj:
                    raise ValueError(f"{path}: a {kind.__name__} named {obj.name!r} is defined twice in {repo_path}")
                found[(kind, obj.name)] = obj
    return list(found.values())


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


def entity_rows(labelled: pd.DataFrame, as_of: pd.Timestamp, use_case: UseCase,
                keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """Builds Feast's entity dataframe from the use case's labelled rows.

    Each row asks for the features as of its event time (the moment the
    decision was made). Only rows whose outcome is known by ``as_of`` (column
    ``label_ts``) take part, so the training set never holds labels from the future.
    The columns ``keep`` stay too (the files rows came from, recorded and dropped before Feast sees them).
    """
    known = labelled[labelled[LABEL_TIME] <= as_of]
    rows = known.rename(columns={use_case.source.event_time: EVENT_TIMESTAMP})
    columns = list(dict.fromkeys([*use_case.entity_keys, EVENT_TIMESTAMP, use_case.protected_attribute,
                                  use_case.label, LABEL_TIME, *keep]))
    return rows[columns].sort_values([EVENT_TIMESTAMP, use_case.source.key]).reset_index(drop=True)


def historical_features(store: "feast.FeatureStore", entities: pd.DataFrame, use_case: UseCase) -> pd.DataFrame:
    """Point-in-time correct features of the use case's feature service for ``entities``."""
    service = store.get_feature_service(use_case.feature_service)
    df = store.get_historical_features(entity_df=entities, features=service).to_df()
    _release_ibis_backend()
    return df.sort_values([EVENT_TIMESTAMP, use_case.source.key]).reset_index(drop=True)


def feature_names(store: "feast.FeatureStore", use_case: UseCase) -> list[str]:
    """Names of the features in the use case's feature service, in service order."""
    service = store.get_feature_service(use_case.feature_service)
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


def _join_keys(view) -> list[str]:
    return [c.name for c in view.entity_columns]


def latest_offline_rows(store: "feast.FeatureStore", use_case: UseCase, sample: int, seed: int = 0) -> dict:
    """What the online store should serve, per online view: the newest offline row of a sample of entities.

    Read from each view's own Parquet source (what ``materialize`` reads), not from the online store.

    Returns:
        ``{view name: rows}``, each with the view's join keys and features.
    """
    import tempfile

    import duckdb

    from platform_assets.warehouse import duckdb_settings

    expected = {}
    for view in online_views(store, use_case):
        keys, features = _join_keys(view), [f.name for f in view.features]
        listed = ", ".join(f'"{k}"' for k in keys)
        selected = ", ".join(f'"{c}"' for c in [*keys, EVENT_TIMESTAMP, *features])
        path = str(view.batch_source.path).replace("'", "''")
        # DuckDB scans the source (its memory bounded, spilling past it): a hashed choice of entities, then
        # the newest row of each (the last in file order among rows of the same time).
        with tempfile.TemporaryDirectory(prefix="duckdb-spill-") as spill, \
                duckdb.connect(config=duckdb_settings(Path(spill))) as con:
            expected[view.name] = con.execute(
                f"WITH chosen AS (SELECT * FROM (SELECT DISTINCT {listed} FROM read_parquet('{path}')) "
                f"ORDER BY hash({listed}, ?::BIGINT) LIMIT ?), "
                f"ranked AS (SELECT s.*, row_number() OVER (PARTITION BY {listed} ORDER BY {EVENT_TIMESTAMP} DESC, "
                f"file_row_number DESC) AS _newest FROM read_parquet('{path}', file_row_number = true) s "
                f"SEMI JOIN chosen USING ({listed})) "
                f"SELECT {selected} FROM ranked "
                f"WHERE _newest = 1 ORDER BY hash({listed}, ?::BIGINT)", [seed, sample, seed]).df()
    return expected


def _same(offline, online) -> bool:
    if isinstance(offline, (list, tuple, np.ndarray)) or isinstance(online, (list, tuple, np.ndarray)):
        if offline is None or online is None:
            return offline is None and online is None
        return [float(v) for v in offline] == [float(v) for v in online]
    if offline is None or (isinstance(offline, float) and np.isnan(offline)):
        return online is None or (isinstance(online, float) and np.isnan(online))
    if isinstance(offline, (int, float, np.number)) and isinstance(online, (int, float, np.number)):
        return float(offline) == float(online)
    return offline == online


def online_mismatches(store: "feast.FeatureStore", expected: dict) -> pd.DataFrame:
    """Compares the online values of each entity in ``expected`` (:func:`latest_offline_rows`) exactly.

    Returns:
        One row per differing (view, entity, feature), with both values; empty when online = offline.
    """
    diffs = []
    for name, rows in expected.items():
        view = store.get_feature_view(name)
        keys, features = _join_keys(view), [f.name for f in view.features]
        entities = [{k: (v.item() if hasattr(v, "item") else v) for k, v in zip(keys, r)}
                    for r in rows[keys].itertuples(index=False)]
        online = store.get_online_features(features=[f"{name}:{f}" for f in features],
                                           entity_rows=entities).to_dict() if entities else {}
        for feature in features:
            answered = list(online.get(feature, []))
            for i, off in enumerate(rows[feature]):
                if i >= len(answered):  # a feature (or an entity) missing from the online answer differs
                    diffs.append({"view": name, "entity": entities[i], "feature": feature,
                                  "offline": off, "online": "missing"})
                elif not _same(off, answered[i]):
                    diffs.append({"view": name, "entity": entities[i], "feature": feature,
                                  "offline": off, "online": answered[i]})
    return pd.DataFrame(diffs, columns=["view", "entity", "feature", "offline", "online"])


def rows_of_entities(path, entities: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The rows of a view's Parquet source whose join keys are among ``entities``' (read by a filtered scan:
    memory follows those entities, not the source)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    source = ds.dataset(str(path), format="parquet")
    wanted = None
    for key in entities.columns:
        values = pa.Array.from_pandas(entities[key].drop_duplicates()).cast(source.schema.field(key).type)
        condition = ds.field(key).isin(values)
        wanted = condition if wanted is None else wanted & condition
    rows = source.to_table(columns=columns, filter=wanted).to_pandas()
    # A key tuple whose parts each appear among the entities, but not together, is dropped by the join later.
    return rows


def point_in_time_mismatches(store: "feast.FeatureStore", training: pd.DataFrame, use_case: UseCase) -> int:
    """Training rows whose feature values are not those of their entity's newest source row as of their time.

    An independent point-in-time join (``pandas.merge_asof`` on each view's own Parquet source,
    within the view's TTL), compared with what Feast's retrieval put in the training set. A row
    whose entity has two source rows at the same newest time is ambiguous and not counted.
    """
    service = store.get_feature_service(use_case.feature_service)
    differs = pd.Series(False, index=training.index)
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        keys, features = _join_keys(view), [f.name for f in projection.features if f.name in training.columns]
        if not features:
            continue
        source = rows_of_entities(view.batch_source.path, training[keys], [*keys, EVENT_TIMESTAMP, *features])
        source[EVENT_TIMESTAMP] = pd.to_datetime(source[EVENT_TIMESTAMP], utc=True)
        ambiguous = source.duplicated([*keys, EVENT_TIMESTAMP], keep=False)
        source = source.assign(_ambiguous=ambiguous).drop_duplicates([*keys, EVENT_TIMESTAMP], keep="last")
        left = training[[*keys, EVENT_TIMESTAMP]].assign(_row=np.arange(len(training)))
        left[EVENT_TIMESTAMP] = pd.to_datetime(left[EVENT_TIMESTAMP], utc=True)
        for key in keys:  # merge_asof needs equal key types
            source[key] = source[key].astype(left[key].dtype)
        joined = pd.merge_asof(
            left.sort_values(EVENT_TIMESTAMP), source.sort_values(EVENT_TIMESTAMP).rename(
                columns={EVENT_TIMESTAMP: "_source_ts", **{f: f"{f}__asof" for f in features}}),
            left_on=EVENT_TIMESTAMP, right_on="_source_ts", by=keys, direction="backward",
            tolerance=view.ttl if view.ttl else None,
        ).sort_values("_row")
        judged = ~joined["_ambiguous"].fillna(False).astype(bool).to_numpy()
        for feature in features:
            got = training[feature].to_numpy()
            want = joined[f"{feature}__asof"].to_numpy()
            bad = [not _same(w, g) for w, g in zip(want, got)]
            differs |= pd.Series(np.array(bad) & judged, index=training.index)
    return int(differs.sum())


def freshness_findings(
    newest_source: dt.datetime | None, newest_features: dt.datetime | None, until: dict[str, dt.datetime | None],
    now: dt.datetime,
) -> dict[str, float | None]:
    """How far the features lag behind their input data, and the online store behind the features.

    Measured against the data, not the clock: the input's own age is the
    freshness check of the raw data; this says whether the feature stage kept up.

    Args:
        newest_source: Newest event time in the validated data.
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
