"""The features of a use case that declares no dbt mart: the source's own columns, derived from the declaration.

A plain tabular dataset (an id, an event time, a label and some numbers and
categories) needs no feature engineering of its own: its model inputs are the
validated row's columns. For such a use case (``marts`` left out) the platform
builds what a user would otherwise write by hand:

* the mart ``features.fct_<use case>_features``: the key, the event time as
  ``event_timestamp``, and every column of the schema that may be a model input,
  numbers as DOUBLE and the rest as text, from ``validated.<source>``;
* the Feast entity on the key, the mart's Parquet export as a ``FileSource``, the view
  ``<use case>_features`` and the declared feature service on it.

What may be a model input: every schema column except the key and entity keys, the
times, the label, personal data and protected attributes
(:attr:`~platform_assets.declarations.UseCase.never_features`), and other date-times.
Feast objects of the same kind and name in the Feast repository win
(:func:`~platform_assets.features.feast_ops.apply_repo`), so a user who writes
their own view or service overrides the derived one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from platform_assets.declarations import UseCase
from platform_assets.sql import quoted

if TYPE_CHECKING:
    import duckdb

EVENT_TIMESTAMP = "event_timestamp"
# A row's features are its own columns, found at its own event time; a day's margin covers clocks.
VIEW_TTL = dt.timedelta(days=1)


@dataclass(frozen=True)
class DerivedFeatures:
    """What is derived for a use case: the mart's name and each model input with its kind."""

    mart: str
    view: str
    numeric: tuple[str, ...]
    text: tuple[str, ...]
    key_dtype: str  # the source key's, for the Feast entity's value type

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.numeric, *self.text)


def _kind(dtype: str) -> str | None:
    """``"numeric"``, ``"text"``, or ``None`` for a date-time (never a model input as it is)."""
    dtype = dtype.lower()
    if dtype.startswith(("datetime", "timestamp", "date", "timedelta")):
        return None
    if dtype.startswith(("int", "uint", "float", "decimal", "bool")):
        return "numeric"
    return "text"


def derived_features(use_case: UseCase) -> DerivedFeatures:
    """The derived mart and its model inputs, read from the use case's schema (imports pandera).

    Raises:
        DeclarationError: When no column of the schema can be a model input.
    """
    from platform_assets.declarations import DeclarationError

    columns = use_case.source.schema_model().to_schema().columns
    never = use_case.never_features | {use_case.source.event_time}
    kinds = {name: _kind(str(column.dtype)) for name, column in columns.items() if name not in never}
    numeric = tuple(n for n, k in kinds.items() if k == "numeric")
    text = tuple(n for n, k in kinds.items() if k == "text")
    if not numeric and not text:
        raise DeclarationError(
            f"use case {use_case.name}: schema {use_case.source.schema} has no column that can be a model input "
            f"(all are keys, times, the label, personal data or protected): declare marts built by dbt instead")
    return DerivedFeatures(mart=use_case.feature_marts[0], view=f"{use_case.name}_features", numeric=numeric,
                           text=text, key_dtype=str(columns[use_case.source.key].dtype).lower())


def mart_sql(use_case: UseCase, derived: DerivedFeatures, schema: str = "features") -> str:
    """The statement that (re)builds the derived mart from the validated table."""
    source = use_case.source
    keys = [quoted(k) for k in dict.fromkeys(use_case.entity_keys)]
    inputs = [f"CAST({quoted(c)} AS DOUBLE) AS {quoted(c)}" for c in derived.numeric]
    inputs += [f"CAST({quoted(c)} AS VARCHAR) AS {quoted(c)}" for c in derived.text]
    return (f"CREATE OR REPLACE TABLE {schema}.{derived.mart} AS SELECT {', '.join(keys)}, "
            f"CAST({quoted(source.event_time)} AS TIMESTAMP) AS {EVENT_TIMESTAMP}, {', '.join(inputs)} "
            f"FROM {source.validated_table}")


def build_mart(con: "duckdb.DuckDBPyConnection", use_case: UseCase, derived: DerivedFeatures,
               schema: str = "features") -> int:
    """Rebuilds the derived mart from every validated row; returns its row count (the validated table's)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute(mart_sql(use_case, derived, schema))
    return con.execute(f"SELECT count(*) FROM {schema}.{derived.mart}").fetchone()[0]


def feast_objects(use_case: UseCase, derived: DerivedFeatures, data_dir: Path) -> list:
    """The Feast entity, file source, view and feature service of the derived mart (imports feast)."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, String

    entity = Entity(name=f"{use_case.name}__{use_case.source.key}", join_keys=[use_case.source.key],
                    value_type=ValueType.INT64 if derived.key_dtype.startswith(("int", "uint")) else ValueType.STRING,
                    description=f"The key of {use_case.source.validated_table} (derived from the declaration).")
    source = FileSource(name=derived.mart, path=str(data_dir / f"{derived.mart}.parquet"),
                        timestamp_field=EVENT_TIMESTAMP)
    view = FeatureView(
        name=derived.view, entities=[entity], ttl=VIEW_TTL, online=False, source=source,
        schema=[*(Field(name=c, dtype=Float64) for c in derived.numeric),
                *(Field(name=c, dtype=String) for c in derived.text)],
        tags={"derived_from": use_case.source.validated_table, "mart": derived.mart})
    return [entity, source, view, FeatureService(name=use_case.feature_service, features=[view])]

