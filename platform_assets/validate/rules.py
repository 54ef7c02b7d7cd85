"""Splitting rows into valid and quarantined, with one reason per failed rule.

Two stages: first every cell is parsed into its column's type (so that text
in a number column, a missing value or an infinity becomes a reason for that
row instead of an error for the batch: :mod:`platform_assets.validate.parse`),
then the pandera model's rules (ranges, categories, cross-field rules) run on
the rows that parsed (:mod:`platform_assets.validate.schema_checks`).
Uniqueness of the business key is not a row rule: it depends on other rows
and other days, and is decided by :mod:`platform_assets.validate.duplicates`.

Both stages give what ``DataFrameModel.validate`` on pandas gives (kept as
:mod:`platform_assets.validate.reference`, and used whole for a schema that
needs a pandera feature the fast path does not run), at a fraction of the
cost: 1M rows from Parquet in 1.1-2 s instead of 5-8 s on a 2-core machine
(``benchmarks/RESULTS.md``, issue 24).

A reason names the column and the rule; it shows the failing value only for
columns that are not personal data (a quarantine reason is read by people
who must not see an email or a phone number).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from platform_assets.declarations import Source
from platform_assets.validate import reference
from platform_assets.validate.parse import parse_column, parse_columns
from platform_assets.validate.reasons import (  # noqa: F401 (the names callers import from here)
    REASONS, WITHHELD, SchemaViolation, ValidationResult, got, refuse_batch_level, show,
)
from platform_assets.validate.schema_checks import Unsupported, coerce_columns, failure_cases, unsupported

_parse_column = parse_column  # the name tests and older callers use


def parse_types(
    df: pd.DataFrame, schema: type[pa.DataFrameModel], personal: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, pd.Series]:
    """Parses every schema column of ``df``; returns the parsed frame and the reasons per failing row.

    Reasons for the ``personal`` columns do not show the value.

    Raises:
        SchemaViolation: If schema columns are missing from ``df`` (names them).
    """
    parsed, reasons, _ = parse_columns(df, _columns(df, schema), personal)
    return df.assign(**parsed), reasons


def _columns(df: pd.DataFrame, schema: type[pa.DataFrameModel]) -> dict:
    columns = schema.to_schema().columns
    absent = [name for name in columns if name not in df.columns]
    if absent:
        raise SchemaViolation(f"batch does not fit {schema.__name__}: missing columns {absent}")
    return columns


def _rule_reasons(cases: pd.DataFrame, schema_name: str, personal: tuple[str, ...]) -> tuple[pd.Series, dict]:
    """One reason string per failing row (its failed rules, sorted, ``; ``-joined) and rows per check.

    ``cases`` is laid out as ``SchemaErrors.failure_cases``; each value is
    shown as the object a row of that frame holds (``astype(object)`` is
    what ``DataFrame.apply(axis=1)`` gives the reference).

    Raises:
        SchemaViolation: For failures of the batch as a whole (no row to blame).
    """
    refuse_batch_level(cases, schema_name)
    per_row: dict = {}
    for index, context, column, check, value in zip(
        cases["index"].to_numpy(), cases["schema_context"].to_numpy(), cases["column"].to_numpy(),
        cases["check"].to_numpy(), cases["failure_case"].astype(object).to_numpy(),
    ):
        reason = f"row: {check}" if context == "DataFrameSchema" else f"{column}: {check} {got(value, column in personal)}"
        per_row.setdefault(index, set()).add(reason)
    rows = list(per_row)  # in no particular order: the reasons are looked up by row
    reasons = pd.Series(["; ".join(sorted(per_row[row])) for row in rows], index=pd.Index(rows), dtype=object)
    return reasons, {str(k): int(v) for k, v in cases.groupby("check")["index"].nunique().items()}


def _take(values: pd.Series, keep) -> object:
    """The values at ``keep`` (a boolean mask), as a NumPy array where the type allows (faster)."""
    return values.to_numpy()[keep] if isinstance(values.dtype, np.dtype) else values.array[keep]


def _candidates(df: pd.DataFrame, parsed: dict, type_reasons: pd.Series) -> tuple[dict, pd.Index]:
    """The rows that parsed (every column of ``df``, schema columns parsed), as Series on their index."""
    columns, index = {name: parsed.get(name, df[name]) for name in df.columns}, df.index
    if len(type_reasons):
        keep = ~df.index.isin(type_reasons.index)
        index = df.index[keep]
        columns = {name: pd.Series(_take(values, keep), index=index, name=name, copy=False)
                   for name, values in columns.items()}
    return columns, index


def split_valid_rows(df: pd.DataFrame, schema: type[pa.DataFrameModel], personal: tuple[str, ...]) -> ValidationResult:
    """Validates ``df`` and splits it into valid rows and quarantined rows with reasons.

    Args:
        df: Raw rows (any column types: text, numbers, timestamps); the index must be unique.
        schema: The pandera model to validate against.
        personal: Columns that hold personal data: their values never appear in a reason.

    Returns:
        Valid rows in the schema's types, and the failing rows as they came in
        plus ``_quarantine_reasons`` (one entry per failed rule, ``; ``-joined).

    Raises:
        SchemaViolation: For failures of the batch rather than of rows (a
            missing column); the message names the columns.
    """
    if not df.index.is_unique:
        raise ValueError("split_valid_rows needs a unique index")
    frame_schema = schema.to_schema()
    if unsupported(frame_schema, df):
        return reference.split_valid_rows(df, schema, personal)
    parsed, type_reasons, text_only = parse_columns(df, _columns(df, schema), personal)
    try:
        candidates, complete = coerce_columns(*_candidates(df, parsed, type_reasons), frame_schema, text_only)
        cases = failure_cases(candidates, frame_schema, complete)
    except Unsupported:
        return reference.split_valid_rows(df, schema, personal)
    counts: dict[str, int] = {"type": len(type_reasons)} if len(type_reasons) else {}
    rule_reasons = pd.Series(dtype=object)
    if cases is not None:
        rule_reasons, rule_counts = _rule_reasons(cases, schema.__name__, personal)
        counts.update(rule_counts)
    reasons = pd.concat([type_reasons, rule_reasons])
    bad = df.index.isin(reasons.index)
    quarantined = df[bad].copy()
    quarantined[REASONS] = reasons.reindex(quarantined.index).to_numpy()
    if len(rule_reasons):
        valid = candidates[~candidates.index.isin(rule_reasons.index)]
    else:  # no row was left out: the frame may still hold the batch's own arrays
        valid = candidates.copy() if type_reasons.empty else candidates
    uncoerced = [name for name, column in frame_schema.columns.items() if not (column.coerce or frame_schema.coerce)]
    if uncoerced:  # the rules judged these as they came; the valid rows still get the schema's types
        valid = valid.copy()
        for name in uncoerced:
            valid[name] = frame_schema.columns[name].dtype.coerce(valid[name])
    return ValidationResult(valid, quarantined, counts)


def encode_label(result: ValidationResult, df: pd.DataFrame, source: Source) -> ValidationResult:
    """The label as 1/0 where the source declares its two values (``positive_label``, ``negative_label``).

    A valid row whose label is neither value moves to quarantine with the reason
    ``<label>: not <positive> or <negative>, got <value>``; a missing label stays
    missing (an outcome not known yet). Sources without declared values pass through.
    """
    label = source.label
    if source.positive_label is None or label is None:
        return result
    values = result.valid[label]
    text = values.astype("string")
    encoded = pd.Series(pd.NA, index=values.index, dtype="Int64")
    encoded[(text == source.positive_label).fillna(False).to_numpy()] = 1
    encoded[(text == source.negative_label).fillna(False).to_numpy()] = 0
    unknown = (values.notna() & encoded.isna()).to_numpy()
    moved = df.loc[result.valid.index[unknown]].copy()
    expected = f"not {source.positive_label!r} or {source.negative_label!r}"
    moved[REASONS] = [f"{label}: {expected} {got(v, label in source.pii)}" for v in values[unknown]]
    valid = result.valid[~unknown].copy()
    kept = encoded[~unknown]
    valid[label] = kept.astype("int64") if kept.notna().all() else kept
    counts = dict(result.failure_counts)
    if unknown.any():
        counts["label_value"] = int(unknown.sum())
    quarantined = pd.concat([result.quarantined, moved]) if len(moved) else result.quarantined
    return ValidationResult(valid, quarantined, counts)


def split_source_rows(df: pd.DataFrame, source: Source) -> ValidationResult:
    """:func:`split_valid_rows` on the source's schema and personal data, then :func:`encode_label`."""
    return encode_label(split_valid_rows(df, source.schema_model(), source.pii), df, source)
