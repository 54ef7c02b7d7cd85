"""The feature store against its own sources: what the online store should serve, and what each training row
may know (an independent point-in-time join). The checks of the features judge with these."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from platform_assets.declarations import UseCase
from platform_assets.features.feast_ops import EVENT_TIMESTAMP, _join_keys, online_views
from platform_assets.sql import quoted

if TYPE_CHECKING:
    import feast


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
        listed = ", ".join(quoted(k) for k in keys)
        selected = ", ".join(quoted(c) for c in [*keys, EVENT_TIMESTAMP, *features])
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
