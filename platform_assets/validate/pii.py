"""Masking personal data with keyed HMAC tokens before rows leave the validation stage.

A salted hash of a phone number is no anonymisation: the phone space is small
and the salt sits next to the data, so every token can be recomputed by brute
force. An HMAC-SHA256 under a secret key kept outside the data cannot be
recomputed without the key (``PII_HMAC_KEY``; see
:func:`platform_assets.settings.pii_key_setting`).
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd

from platform_assets.declarations import Source
from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter
from platform_assets.sql import quoted

HASH_CHARS = 32
MASKED_PATTERN = rf"^[0-9a-f]{{{HASH_CHARS}}}$"


def hmac_token(value: str, key: str) -> str:
    """Hex HMAC-SHA256 of ``value`` under ``key`` (first 32 characters): same input and key, same token."""
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:HASH_CHARS]


def _hmac_tokens(values, key: str) -> list[str]:
    """:func:`hmac_token` of many values: the keyed state is set up once and copied (1.7 against 2.4 us a value)."""
    keyed = hmac.new(key.encode(), digestmod=hashlib.sha256)
    tokens = []
    for value in values:
        h = keyed.copy()
        h.update(value.encode())
        tokens.append(h.hexdigest()[:HASH_CHARS])
    return tokens


def mask_pii(df: pd.DataFrame, columns: tuple[str, ...], key: str) -> pd.DataFrame:
    """Returns a copy of ``df`` whose ``columns`` (those present) hold HMAC tokens.

    Equal values map to equal tokens, so joins and counts by person still work;
    missing values stay missing (``None``). Any column works: empty, all
    missing, or a mix of text, numbers and gaps (a number is masked as its
    text, so ``447700900123`` and ``"447700900123"`` get the same token). Each
    distinct value is hashed once.

    Raises:
        ValueError: If the key is empty (an unkeyed hash of a phone number is easy to reverse).
    """
    if not key:
        raise ValueError("PII masking needs a non-empty key (set PII_HMAC_KEY)")
    masked = df.copy()
    for column in columns:
        if column not in masked.columns:
            continue
        values = masked[column]
        present = values.notna().to_numpy()
        tokens = np.full(len(values), None, dtype=object)
        if present.any():
            codes, uniques = pd.factorize(values[present].astype(str))
            tokens[present] = np.array(_hmac_tokens(uniques, key), dtype=object)[codes]
        masked[column] = pd.Series(tokens, index=values.index, dtype=object)
    return masked


# A raw value shorter than this cannot be told apart from the words of a reason ("ion" in "application").
MIN_LEAK_CHARS = 4
# A reason may show a value cut short: its first characters are enough to count as a leak.
LEAK_PREFIX_CHARS = 16


def count_leaked_reasons(con, source: Source, days: list[str] | None = None) -> dict[str, int]:
    """Quarantined rows of ``days`` (all for ``None``) whose reasons contain a raw personal-data value of the row.

    The raw values come from the source's raw table (joined on source file and
    row), not from what validation wrote, so a value that slipped through in
    any form the code did not foresee is still found: the whole value, or its
    first ``LEAK_PREFIX_CHARS`` characters, anywhere in the reason.
    """
    where, params = partition_filter(days, f"q.{PARTITION_COLUMN}")
    raw_columns = {r[0] for r in con.execute(f"DESCRIBE {source.raw_table}").fetchall()}
    reasons = "CAST(q._quarantine_reasons AS VARCHAR)"
    if "_duplicate_of" in {r[0] for r in con.execute(f"DESCRIBE {source.quarantine_table}").fetchall()}:
        # A duplicate's reason names the first copy's file path, which is no personal data (and may hold any word).
        reasons = f"replace({reasons}, coalesce(CAST(q._duplicate_of AS VARCHAR), ''), '')"
    leaks = {}
    for column in (c for c in source.pii if c in raw_columns):
        value = f"trim(CAST(r.{quoted(column)} AS VARCHAR))"
        leaks[column] = con.execute(
            f"""
            SELECT count(*) FROM {source.quarantine_table} q
            JOIN {source.raw_table} r ON r._source_file = q._source_file AND r._source_row = q._source_row
            WHERE ({where}) AND length({value}) >= {MIN_LEAK_CHARS}
              AND contains({reasons}, left({value}, {LEAK_PREFIX_CHARS}))
            """,
            params,
        ).fetchone()[0]
    return leaks
