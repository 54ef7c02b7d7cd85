"""Splitting rows into valid and quarantined, with one reason per failed rule."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pandera.errors
import pandera.pandas as pa

from platform_assets.validate.schema import ApplicationSchema

REASONS = "_quarantine_reasons"


@dataclass
class ValidationResult:
    """The outcome of validating a batch: every input row is in exactly one frame."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame
    failure_counts: dict[str, int]


class SchemaViolation(ValueError):
    """The batch as a whole does not fit the schema (for example, a column is missing)."""


def _rule_name(row: pd.Series) -> str:
    if row["schema_context"] == "DataFrameSchema":  # a cross-field rule: one reason per row
        return f"row: {row['check']}"
    return f"{row['column']}: {row['check']} (got {row['failure_case']!r})"


def split_valid_rows(df: pd.DataFrame, schema: type[pa.DataFrameModel] = ApplicationSchema) -> ValidationResult:
    """Validates ``df`` and splits it into valid rows and quarantined rows with reasons.

    Args:
        df: Raw rows; the index must be unique (a RangeIndex is fine).
        schema: The pandera model to validate against.

    Returns:
        Valid rows coerced to the schema's types, and the failing rows as they
        came in plus ``_quarantine_reasons`` (one entry per failed rule, ``; ``-joined).

    Raises:
        SchemaViolation: For failures that concern the batch rather than rows
            (missing columns, a column of the wrong type as a whole); the
            message names the column and the check.
    """
    if not df.index.is_unique:
        raise ValueError("split_valid_rows needs a unique index")
    try:
        valid = schema.validate(df, lazy=True)
        return ValidationResult(valid, df.iloc[0:0].assign(**{REASONS: pd.Series(dtype=str)}), {})
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    batch_level = cases[cases["index"].isna()]
    if not batch_level.empty:
        problems = "; ".join(
            f"{r['check']} failed for {r['failure_case']!r} (column {r['column']})" for _, r in batch_level.head(10).iterrows()
        )
        raise SchemaViolation(f"batch does not fit {schema.__name__}: {problems}")
    cases = cases.assign(reason=cases.apply(_rule_name, axis=1))
    reasons = cases.groupby("index")["reason"].agg(lambda r: "; ".join(sorted(set(r))))
    bad = df.index.isin(reasons.index)
    quarantined = df[bad].copy()
    quarantined[REASONS] = reasons.reindex(quarantined.index).to_numpy()
    valid = schema.validate(df[~bad], lazy=False)
    counts = cases.groupby("check")["index"].nunique().astype(int).to_dict()
    return ValidationResult(valid, quarantined, {str(k): v for k, v in counts.items()})
