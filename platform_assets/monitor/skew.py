"""Training/serving skew on real traffic: the features the server used against point-in-time offline ones.

Plain functions, no Dagster. Once a row that was scored has landed and
passed through dbt, its point-in-time features (the use case's feature service:
what training would have used for it) must equal what
the server computed at request time. A stale online store (a day not yet
materialized) serves too little history; one that holds rows the request could
not have known (later days, the same day) serves too much: either way they differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def feature_mismatches(
    served: pd.DataFrame, offline: pd.DataFrame, features: list[str], key: str, rel: float = 1e-6
) -> pd.DataFrame:
    """Every (request, feature) whose served value differs from the offline one.

    Args:
        served: Logged rows: ``request_id``, ``key`` and the features.
        offline: One row per ``key`` with the point-in-time features.
        features: The columns to compare (those present on both sides).
        key: The column both sides are joined on (the source's key).
        rel: Relative tolerance of numbers (of ``max(1, |offline|)``): SQL and Python sum
            the same floats in another order.

    Returns:
        ``request_id``, ``key``, ``feature``, ``served``, ``offline``; empty when all agree.
    """
    joined = served.merge(offline, on=key, suffixes=("", "__offline"), how="inner")
    found = []
    for name in features:
        if name not in joined.columns or f"{name}__offline" not in joined.columns:
            continue
        left, right = joined[name], joined[f"{name}__offline"]
        if pd.api.types.is_numeric_dtype(left) and pd.api.types.is_numeric_dtype(right):
            a, b = left.to_numpy(dtype=float), right.to_numpy(dtype=float)
            same = np.abs(a - b) <= rel * np.maximum(1.0, np.abs(b))
            same |= np.isnan(a) & np.isnan(b)
        else:
            same = (left.astype(str) == right.astype(str)).to_numpy()
        for i in np.flatnonzero(~same):
            found.append({"request_id": joined["request_id"].iloc[i], key: joined[key].iloc[i],
                          "feature": name, "served": left.iloc[i], "offline": right.iloc[i]})
    return pd.DataFrame(found, columns=["request_id", key, "feature", "served", "offline"])
