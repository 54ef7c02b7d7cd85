"""What validation hands back: the split of a batch and the words of a quarantine reason.

Shared by the engine (:mod:`platform_assets.validate.rules`) and the
reference it is tested against (:mod:`platform_assets.validate.reference`).
A reason names the column and the rule; it shows the failing value only for
columns that are not personal data.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

REASONS = "_quarantine_reasons"
WITHHELD = "(value withheld: personal data)"


@dataclass
class ValidationResult:
    """The outcome of validating a batch: every input row is in exactly one frame."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame
    failure_counts: dict[str, int]


class SchemaViolation(ValueError):
    """The batch as a whole does not fit the schema (for example, a column is missing)."""


def show(value: object, limit: int = 60) -> str:
    """``repr`` of a failing value, cut to ``limit`` characters (a field can be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def got(value: object, personal: bool) -> str:
    """The part of a reason that shows the failing value: ``(got ...)``, or a note that it is withheld."""
    return WITHHELD if personal else f"(got {show(value)})"


def rule_name(row: pd.Series, personal: tuple[str, ...]) -> str:
    """The reason for one of pandera's failure cases (a row of ``SchemaErrors.failure_cases``)."""
    if row["schema_context"] == "DataFrameSchema":  # a cross-field rule: one reason per row
        return f"row: {row['check']}"
    return f"{row['column']}: {row['check']} {got(row['failure_case'], row['column'] in personal)}"


def refuse_batch_level(cases: pd.DataFrame, schema_name: str) -> None:
    """Raises :class:`SchemaViolation` when pandera's failure cases hold failures of the batch (no row to blame)."""
    batch_level = cases[cases["index"].isna()]
    if not batch_level.empty:
        problems = "; ".join(
            f"{r['check']} failed for {r['failure_case']!r} (column {r['column']})"
            for _, r in batch_level.head(10).iterrows()
        )
        raise SchemaViolation(f"batch does not fit {schema_name}: {problems}")
