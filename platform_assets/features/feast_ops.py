"""Feature store operations as plain functions: export, apply, materialize, retrieve, compare."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import duckdb
    import feast

from platform_assets.declarations import UseCase
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


def kind_of(obj) -> str | None:
    """The Feast kind of ``obj`` (``Entity``, ``DataSource``, ``FeatureView``, ``FeatureService``), or ``None``."""
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    return next((k.__name__ for k in (Entity, DataSource, FeatureView, FeatureService) if isinstance(obj, k)), None)


def load_definitions(repo_path: Path) -> list:
    """Imports every ``*.py`` of the Feast repository afresh (one per use case) and returns its Feast objects.

    Loaded from their files (not through ``sys.path``) so that the paths they read
    from ``PLATFORM_HOME`` are those of the current state root. Objects are
    returned once each (a file may import another's).
    """
    import importlib.util

    found: dict[tuple[str, str], object] = {}
    for path in sorted(Path(repo_path).resolve().glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"_feature_repo_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for obj in vars(module).values():
            kind = kind_of(obj)
            if kind is not None:
                if (kind, obj.name) in found and found[(kind, obj.name)] is not obj:
                    raise ValueError(f"{path}: a {kind} named {obj.name!r} is defined twice in {repo_path}")
                found[(kind, obj.name)] = obj
    return list(found.values())


def overridden(objects: list, defined: list) -> list:
    """``objects`` less those whose kind and name the Feast repository already defines (``defined``)."""
    taken = {(kind_of(o), o.name) for o in defined}
    return [o for o in objects if (kind_of(o), o.name) not in taken]


def apply_repo(store: "feast.FeatureStore", repo_path: Path, derived: list = ()) -> list[str]:
    """Registers every object defined in the Feast repository, as ``feast apply`` does, and the ``derived`` ones
    the repository does not define by the same kind and name (its own win)."""
    defined = load_definitions(repo_path)
    objects = [*defined, *overridden(list(derived), defined)]
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
    columns = list(dict.fromkeys([*use_case.entity_keys, EVENT_TIMESTAMP,
                                  *([use_case.protected_attribute] if use_case.protected_attribute else []),
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


def _join_keys(view) -> list[str]:
    return [c.name for c in view.entity_columns]


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
