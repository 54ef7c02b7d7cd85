"""Masking personal data with salted hashes before rows leave the validation stage."""

from __future__ import annotations

import hashlib

import pandas as pd

HASH_CHARS = 32
MASKED_PATTERN = rf"^[0-9a-f]{{{HASH_CHARS}}}$"


def salted_hash(value: str, salt: str) -> str:
    """Hex sha256 of ``salt`` and ``value`` (first 32 characters): same input, same token."""
    return hashlib.sha256(f"{salt}\x00{value}".encode()).hexdigest()[:HASH_CHARS]


def mask_pii(df: pd.DataFrame, columns: tuple[str, ...], salt: str) -> pd.DataFrame:
    """Returns a copy of ``df`` whose ``columns`` (those present) hold salted hashes.

    Equal values map to equal tokens, so joins and counts by person still work;
    missing values stay missing. Each distinct value is hashed once.

    Raises:
        ValueError: If the salt is empty (an unsalted hash of a phone number is easy to reverse).
    """
    if not salt:
        raise ValueError("PII masking needs a non-empty salt (set PII_SALT)")
    masked = df.copy()
    for column in columns:
        if column not in masked.columns:
            continue
        codes, uniques = pd.factorize(masked[column])
        tokens = pd.Index([salted_hash(str(v), salt) for v in uniques], dtype=object)
        masked[column] = pd.Series(tokens.take(codes), index=masked.index).where(codes >= 0, None)
    return masked
