"""Batch scoring: a day's rows through the served model's own preprocessing and forward pass.

Plain functions, no Dagster. The features are the use case's feature service as of
each row's event time (Feast's point-in-time join, what training reads), so a
batch score is what the model would have answered for that row with the features
known then; the bundle's preprocessor and ``predict_proba`` are the code the
model server runs.
"""

from __future__ import annotations

import pandas as pd

from platform_assets.declarations import UseCase
from platform_assets.features.feast_ops import EVENT_TIMESTAMP, historical_features
from platform_assets.sql import quoted


def score_rows(rows: pd.DataFrame, bundle, store, use_case: UseCase, version: str,
               carry: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per input row: its entity keys, ``carry`` columns, ``event_ts``, ``model_version`` and ``probability``.

    A row whose features the store does not hold gets a missing probability (the check on the
    batch counts it), never a made-up one.
    """
    keys = list(dict.fromkeys(use_case.entity_keys))
    columns = [*keys, *carry, "event_ts", "model_version", "probability"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    entities = rows[[*keys, use_case.source.event_time, *carry]].rename(columns={use_case.source.event_time: EVENT_TIMESTAMP})
    features = historical_features(store, entities, use_case)
    inputs = features[bundle.preprocessor.input_names]
    complete = inputs.notna().all(axis=1).to_numpy()
    probability = pd.Series(float("nan"), index=features.index)
    if complete.any():
        probability[complete] = bundle.predict_proba(features[complete])
    out = features[[*keys, *carry]].copy()
    out["event_ts"] = features[EVENT_TIMESTAMP]
    out["model_version"] = str(version)
    out["probability"] = probability.to_numpy()
    return out[columns]


def scoring_gaps(con, source, table: str, days: list[str] | None) -> dict:
    """Validated rows of ``days`` (all for ``None``) against their batch scores: counts, and ``passed`` when
    every valid row has exactly one finite probability in [0, 1]."""
    from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter

    where, params = partition_filter(days)
    valid = con.execute(f"SELECT count(*) FROM {source.validated_table} WHERE {where}", params).fetchone()[0]
    scored, distinct, bad = con.execute(
        f"SELECT count(*), count(DISTINCT ({quoted(source.key)}, {PARTITION_COLUMN})), "
        f"count(*) FILTER (WHERE probability IS NULL OR NOT isfinite(probability) OR probability < 0 "
        f"OR probability > 1) FROM {table} WHERE {where}", params).fetchone()
    return {"passed": valid == scored == distinct and bad == 0, "validated_rows": int(valid),
            "scored_rows": int(scored), "distinct_keys": int(distinct), "bad_probabilities": int(bad)}
